// Command coordinator is the Corral command line: submit jobs, read entity
// state and look at the cluster.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/internal/cli"
)

const usage = `Usage: coordinator [--consul ADDR] COMMAND [flags]

Commands:
  submit   submit one job (--handler --key --payload [--id]) or many (--file F.jsonl, - for stdin)
  state    print an entity's committed state as JSON: state ENTITY KEY (an unknown ENTITY lists the known ones)
  call     run one job synchronously on its key's owner and print its result (or why it was rejected)
  result   print a job's result: result [--wait D] ID
  dlq      dead letters: dlq list | show ID | replay ID...|--all | purge ID...|--all
  jobs     look at and cancel jobs: jobs list --state S | show ID | cancel ID...
  status   members, partitions per member, queue depth; warns when workers serve different handlers
  locate   partition, owner and epoch of keys: locate KEY [KEY...]
  drain    hand a worker's partitions off and stop it claiming: drain WORKER
  reshard  change the partition count of the running cluster: reshard --partitions N
  reload   relaunch workers' plugins from their binaries (hot upgrade): reload [WORKER...]
  schedule jobs submitted at every tick of a cron expression:
           schedule add NAME --cron EXPR ... | list | show NAME | pause NAME | resume NAME | delete NAME
  handler  flow control across the cluster: handler pause|resume H, handler limit H
           [--concurrency N] [--rate R [--burst B]] [--clear], handler list
  entities keys of an entity type with state, and deletes: entities list ENTITY [--prefix P]
           [--limit N] [--after CURSOR] | delete ENTITY KEY
  broadcast run a broadcast handler once on every worker of a group: broadcast [--group G]
           --handler H [--payload JSON] [--id ID]
  watch    print the messages handlers publish to topics as they commit: watch TOPIC [TOPIC...]
  certs    make TLS certificates: certs init | issue --role R --name N | show FILE
  completion  print a shell completion script: completion bash|zsh|fish

Global flags:
  --consul ADDR        Consul agent HTTP address (env CORRAL_CONSUL_ADDR, default 127.0.0.1:8500)
  --consul-token TOKEN Consul ACL token (env CONSUL_HTTP_TOKEN)
  --timeout D          deadline of the whole command (default 30s; submit --file has none)
  --retry-for D        how long submit and call try again, with the same job ids, while no
                       worker can take them (workers down, Redis restarting) (default 30s)
  --full-wait D        how long submit (and a call's fallback to the queue) backs off and sends
                       the same jobs again while a partition's queue is full (worker
                       --max-queue-depth) (default 10m; 0 does not wait)
  --tls-cert FILE      client certificate for the workers' mutual TLS; its role (read, submit
                       or admin) decides what the workers allow (env CORRAL_TLS_CERT)
  --tls-key FILE       its private key (env CORRAL_TLS_KEY)
  --tls-ca FILE        the cluster's CA, which the workers' certificates must chain to
                       (env CORRAL_TLS_CA)
  --insecure           dial the workers in plaintext (or CORRAL_TLS=off)

Without --tls-* flags, the admin certificate of the local cluster (scripts/cluster.sh,
"make up") is used when it is there: $CORRAL_STATE/tls, else .corral/tls; else plaintext.

Output:
  -o, --output table|json  on every command that prints data (status, locate,
                       jobs, dlq, schedule list|show, handler, result, state,
                       call, submit, drain, reshard, reload, certs show, entities,
                       broadcast, watch): table for
                       people, json for scripts.
                       JSON field names are snake_case and stable (README,
                       "Output formats").

Exit codes:
  0  the command did what it was asked
  1  it failed: an error from the cluster or the network, or a job that is
     not done (result, call, submit --wait: dead, rejected, cancelled,
     not finished)
  2  the command line is wrong: an unknown command or flag, or a flag value
     that does not parse

Run "coordinator COMMAND --help" for a command's flags, and
"coordinator completion bash|zsh|fish" for a shell completion script.
`

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "coordinator:", cli.Explain(err))
		os.Exit(exitCode(err))
	}
}

// usageError is a wrong command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode is the exit status of a failed command (see usage).
func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

type globals struct {
	consul   string
	token    string
	timeout  time.Duration
	retryFor time.Duration
	fullWait time.Duration
	tls      cli.TLSFlags
	tlsFrom  *string // where the client's certificate came from, once a client was made
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("coordinator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	var g globals
	fs.StringVar(&g.consul, "consul", cli.DefaultConsulAddr(), "")
	fs.StringVar(&g.token, "consul-token", os.Getenv("CONSUL_HTTP_TOKEN"), "")
	fs.DurationVar(&g.timeout, "timeout", 30*time.Second, "")
	fs.DurationVar(&g.retryFor, "retry-for", client.DefaultRetry().For, "")
	fs.DurationVar(&g.fullWait, "full-wait", client.DefaultRetry().FullFor, "")
	g.tls.Register(fs, "")
	g.tlsFrom = new(string)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError{errors.New("no command given")}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	newClient := func() (*client.Client, error) {
		retry := client.DefaultRetry()
		retry.For, retry.FullFor = g.retryFor, g.fullWait
		tlsCfg, from, err := g.tls.ClientConfig()
		if err != nil {
			return nil, err
		}
		*g.tlsFrom = from
		return client.New(client.Config{ConsulAddr: g.consul, ConsulToken: g.token, Retry: retry, TLS: tlsCfg})
	}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	err := runCommand(ctx, cmd, rest, g, newClient, stdin, stdout, stderr, fs)
	return explainTLS(err, *g.tlsFrom)
}

func runCommand(ctx context.Context, cmd string, rest []string, g globals, newClient func() (*client.Client, error), stdin io.Reader, stdout, stderr io.Writer, fs *flag.FlagSet) error {
	switch cmd {
	case "submit":
		return tracedSubmit(ctx, func(ctx context.Context) error { return submitCmd(ctx, g, newClient, rest, stdin, stdout, stderr) })
	case "state":
		return stateCmd(ctx, g, newClient, rest, stdout, stderr)
	case "call":
		return callCmd(ctx, g, newClient, rest, stdout, stderr)
	case "result":
		return resultCmd(ctx, g, newClient, rest, stdout, stderr)
	case "dlq":
		return dlqCmd(ctx, g, newClient, rest, stdout, stderr)
	case "jobs":
		return jobsCmd(ctx, g, newClient, rest, stdout, stderr)
	case "status":
		return statusCmd(ctx, g, newClient, rest, stdout, stderr)
	case "locate":
		return locateCmd(ctx, g, newClient, rest, stdout, stderr)
	case "reshard":
		return reshardCmd(ctx, g, newClient, rest, stdout, stderr)
	case "drain":
		return drainCmd(ctx, g, newClient, rest, stdout, stderr)
	case "reload":
		return reloadCmd(ctx, g, newClient, rest, stdout, stderr)
	case "schedule":
		return scheduleCmd(ctx, g, newClient, rest, stdout, stderr)
	case "handler":
		return handlerCmd(ctx, g, newClient, rest, stdout, stderr)
	case "entities":
		return entitiesCmd(ctx, g, newClient, rest, stdout, stderr)
	case "broadcast":
		return broadcastCmd(ctx, g, newClient, rest, stdout, stderr)
	case "watch":
		return watchCmd(ctx, g, newClient, rest, stdout, stderr)
	case "certs":
		return certsCmd(rest, stdout, stderr)
	case "completion":
		return completionCmd(rest, stdout, stderr)
	case "help":
		fs.Usage()
		return nil
	}
	fs.Usage()
	return usageError{fmt.Errorf("unknown command %q", cmd)}
}

// connect opens a client and a context bounded by --timeout; done releases
// both.
func connect(ctx context.Context, g globals, newClient func() (*client.Client, error)) (*client.Client, context.Context, func(), error) {
	c, err := newClient()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

// parse parses a subcommand's flags; done is true when --help was asked.
func parse(fs *flag.FlagSet, args []string, stderr io.Writer) (done bool, err error) {
	fs.SetOutput(stderr)
	err = fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return true, nil
	}
	if err != nil {
		return false, usageError{err}
	}
	return false, nil
}
