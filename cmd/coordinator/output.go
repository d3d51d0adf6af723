package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// The --output flag: "table" (the default, for people) or "json" (for
// scripts). JSON field names are snake_case and stable; README's "Output
// formats" lists them. Times are RFC 3339 UTC strings, durations in
// milliseconds with an _ms suffix, lists are [] rather than null.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// output holds a command's --output (-o) flag.
type output struct{ format string }

// outputFlag registers --output and its short form -o on fs, defaulting
// to def (table for listings, json for commands that always printed JSON).
func outputFlag(fs *flag.FlagSet, def string) *output {
	o := &output{format: def}
	fs.Var(o, "output", "output format: table or json")
	fs.Var(o, "o", "short for --output")
	return o
}

func (o *output) String() string {
	if o == nil {
		return ""
	}
	return o.format
}

func (o *output) Set(s string) error {
	switch s {
	case outputTable, outputJSON:
		o.format = s
		return nil
	}
	return fmt.Errorf("unknown output format %q: table or json", s)
}

func (o *output) json() bool { return o.format == outputJSON }

// printJSON writes v as indented JSON and a newline.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

// printFields prints the fields of a JSON object, in its order, as a
// two-column table: the table form of a show command. Nested values are
// printed as compact JSON; a list of strings one item per line.
func printFields(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("printFields: not an object")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		var s string
		var list []string
		switch {
		case json.Unmarshal(raw, &s) == nil:
			fmt.Fprintf(tw, "%s\t%s\n", strings.ToUpper(k.(string)), strings.ReplaceAll(s, "\n", " "))
		case json.Unmarshal(raw, &list) == nil && len(list) > 0:
			for i, item := range list {
				name := ""
				if i == 0 {
					name = strings.ToUpper(k.(string))
				}
				fmt.Fprintf(tw, "%s\t%s\n", name, strings.ReplaceAll(item, "\n", " "))
			}
		default:
			var c bytes.Buffer
			if json.Compact(&c, raw) != nil {
				c.Reset()
				c.Write(raw)
			}
			fmt.Fprintf(tw, "%s\t%s\n", strings.ToUpper(k.(string)), c.String())
		}
	}
	return tw.Flush()
}
