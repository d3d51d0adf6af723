package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/corralhq/corral/client"
)

func locateCmd(ctx context.Context, g globals, newClient func() (*client.Client, error), args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("locate", flag.ContinueOnError)
	out := outputFlag(fs, outputTable)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: coordinator locate [-o table|json] KEY [KEY...]\n\nPrints each key's partition, the worker holding it (with its fencing epoch)\nand the owner the ring names; they differ only while a partition moves.\n\nFlags:")
		fs.PrintDefaults()
	}
	if done, err := parse(fs, args, stderr); done || err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("locate needs at least one KEY")
	}
	c, ctx, done, err := connect(ctx, g, newClient)
	if err != nil {
		return err
	}
	defer done()
	locs, err := c.Locate(ctx, fs.Args()...)
	if err != nil {
		return err
	}
	if out.json() {
		rows := []locationJSON{}
		for _, l := range locs {
			rows = append(rows, toLocationJSON(l))
		}
		return printJSON(stdout, rows)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tPARTITION\tOWNER\tEPOCH\tRING OWNER\tADDRESS")
	for _, l := range locs {
		owner := l.Owner
		if owner == "" {
			owner = "(free)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", l.Key, l.Partition, owner, l.Epoch, l.RingOwner, l.OwnerAddress)
	}
	return tw.Flush()
}
