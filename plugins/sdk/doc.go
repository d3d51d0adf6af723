// Package sdk turns Go functions into a Corral handler plugin: a program
// that a worker launches, asks which handlers it serves, and then sends
// batches of jobs to. This package is all a Go plugin needs; the protocol
// underneath is plugins/pluginpb/handler.proto, for other languages.
//
// # A complete plugin
//
// This program serves one handler, counter.add, which adds a number to a
// counter and answers with the counter's new total:
//
//	package main
//
//	import "github.com/corralhq/corral/plugins/sdk"
//
//	type Add struct {
//		N int `json:"n"`
//	}
//
//	type Counter struct {
//		Total int `json:"total"`
//	}
//
//	func add(c *sdk.Call, in Add, s Counter) (Counter, error) {
//		if in.N <= 0 {
//			return s, sdk.Failf("n must be positive, got %d", in.N) // dead-lettered
//		}
//		s.Total += in.N
//		return s, c.SetResult(s) // Typed saves the state returned
//	}
//
//	func main() {
//		sdk.Serve(sdk.Handler("counter.add", sdk.Typed(add), sdk.ShapeOf[Add]()))
//	}
//
// Build it, give the binary to the workers and submit jobs to it:
//
//	go build -o bin/counter-plugin .
//	worker --plugin bin/counter-plugin --redis ... --consul ...
//	coordinator submit --handler counter.add --key apples --payload '{"n": 3}' --wait
//	coordinator state counter apples          # {"total":3}
//
// Serve names the plugin after the binary ("counter": the file name
// without "-plugin") and versions it from the build; New("counter",
// "1.0.0", handlers...).Serve() chooses both. Run by hand, the binary only
// says that it is a plugin.
//
// # Handlers, entities and keys
//
// A handler is a HandlerFunc, func(*Call) error, declared with Handler
// under a name "entity.action". By default the part of the name before the
// first dot is the entity type whose state the handler reads and writes
// (plugins.EntityType): "counter.add" and "counter.reset" both work on
// counter entities, and a name without a dot is an entity type of its own.
// A handler whose name says what it does rather than what it works on
// declares its entity type with Entity: "stock.add" and "stock.reserve",
// both declared Entity("inventory"), share the inventory entity of a key.
// Typed builds a HandlerFunc from a function of a typed payload and state.
//
// The submitter chooses each job's key, and the key names the entity: a
// counter.add job with key "apples" works on the entity (counter, apples).
// A handler reads and replaces that one entity's state (Call.Load,
// Call.Save); it changes other entities by emitting jobs to them
// (Call.Emit) and may read their committed state (Call.Query).
//
// The key also picks the job's partition (a hash of the key), so all jobs
// of one key go to the worker that owns the partition and commit one at a
// time, in the order they were submitted, whatever their handler. The
// batches of different partitions run at the same time: one plugin
// process may run several batches on several goroutines at once, so
// anything a handler shares outside its Call must be safe for concurrent
// use.
//
// One binary may serve any number of handlers of any entity types; two
// plugins of one worker may not serve the same handler name. coordinator
// state, and Call.Query, refuse an entity type that no handler works on,
// naming the ones that some handler does.
//
// A handler declared Internal runs only the jobs other handlers emit to
// it: one step of a workflow that must not be started from outside. The
// worker refuses its jobs at submit and call.
//
// # The life of a job
//
// Submit. The worker checks a job before it queues it: the handler is
// served and not Internal, the key is not empty (at most 1024 bytes), the
// payload is JSON of at most 1 MiB (worker --max-payload) and has the
// handler's declared shape (ShapeOf, PayloadShape, OptionalFields; with
// NoUnknownFields, the default of ShapeOf, no other field). A job that
// fails a check is refused to its submitter with the reason, naming the
// field at fault, and never reaches the plugin.
//
// Run. The owner of the key's partition reads up to 256 jobs at a time
// (worker --batch), loads the state of every entity they touch, and sends
// them to the plugin in one Handle call with a deadline (Timeout, default
// 10 s). The SDK runs the jobs one after another, in order, each with its
// own Call. A job sees the state left by the earlier successful jobs of
// its entity in the same batch.
//
// Outcome. What the handler returns decides the job's fate:
//
//   - nil: the job is done. The state it saved, the result it set and the
//     jobs it emitted are committed together with the job's finished
//     record, in one atomic commit of the whole batch, fenced so that only
//     the partition's current owner can make it.
//   - an error made by Reject or Rejectf: a business "no" (out of stock,
//     over a limit). The job is finished as rejected, with the reason as
//     its answer in place of a result, and the key moves on to its next
//     job; it is never retried and never dead-lettered. The submitter gets
//     the reason: coordinator call and submit --wait print it and exit
//     non-zero, and GetResult reports the job REJECTED.
//   - an error made by Fail or Failf (also the error of Decode or Payload
//     for a payload that does not decode): the job failed for good. It is
//     dead-lettered at once with its error history, and the key moves on
//     to its next job.
//   - an error made by RetryAfter, any other error, or a panic: the
//     attempt failed. The job is tried again after a backoff (200 ms,
//     doubling per attempt up to 1 min, half of it jittered: worker
//     --retry-backoff and --retry-backoff-max; RetryAfter asks for at least
//     its own delay), with Call.Attempt one higher. While it waits it holds
//     its key: the key's later jobs wait behind it, other keys go on.
//     After its last attempt (MaxAttempts, default 5) it is dead-lettered
//     with "gave up after N attempts".
//
// A job that does not return nil changes nothing: what it saved, set or
// emitted is thrown away, and later jobs of the batch do not see it. When
// an error's chain holds more than one of these marks, Fail wins over
// Reject, and Reject over RetryAfter.
//
// After the commit. Emitted jobs are relayed to the partitions of their
// keys (at once, or within a second when a worker failed in between) and
// run there like submitted jobs. The result is kept for 24 h (worker
// --result-retention) for coordinator result, coordinator submit --wait,
// the Go client's Results and the reply of a Call. Dead letters are kept
// for 7 days, at most 10,000 per partition (worker --dead-retention,
// --dead-max); coordinator dlq lists them and replays them with fresh
// attempts.
//
// # Effects happen once; runs may not
//
// A batch may run more than once: the plugin may crash or miss its
// deadline, the worker may crash before it commits, or the partition may
// move to another worker. Only a committed outcome counts, and each job id
// commits once. So a handler's effects must all go through its Call
// (Save, SetResult, Emit): a handler that writes to a database, sends an
// e-mail or posts to a web service does so again on every run. Derive
// anything that must be the same on every run from the job (Call.ID, the
// payload, the state), not from the clock or randomness.
//
// Emitted jobs get ids derived from their parent's id (Call.Emit), so a
// parent that runs twice emits the same jobs, and each runs once.
//
// # Deadlines, crashes and panics
//
// A Handle call must answer before its deadline: the largest Timeout of
// the handlers in the batch, default 10 s (worker --plugin-timeout). The
// deadline cancels Call.Context; a handler that may block should watch
// it. A call that misses its deadline, or whose plugin process dies, fails
// as a whole: the worker kills and relaunches the process, then runs the
// batch again one key at a time, so that only the job that hangs or
// crashes is charged an attempt and the other keys' jobs commit.
//
// A panic costs less: the SDK recovers it, logs it with its stack, and
// reports a failed attempt for that job only; the batch goes on.
//
// # Handler options
//
// Options passed to Handler are sent to the worker when it launches the
// plugin, and apply to every job of the handler:
//
//   - Timeout(d): the deadline of a Handle call with jobs of the handler
//     (default 10 s).
//   - MaxAttempts(n): attempts before dead-lettering (default 5). A
//     submitter may set its own, 1 to 100, per job.
//   - Concurrency(n): at most n attempts of the handler in flight across
//     the cluster at once; the others wait without spending attempts
//     (`coordinator handler limit` overrides it at runtime).
//   - ShapeOf[T]() or PayloadShape(fields): the payload's required fields
//     and their JSON types, checked by the worker at submit. "integer" is
//     a whole number written without a fraction or an exponent that fits
//     an int64, "number" one that fits a float64, so that a payload the
//     worker admits decodes in the handler.
//   - OptionalFields(fields): fields a payload may have, checked when
//     present ("any" for any type). ShapeOf makes a struct's omitempty
//     fields optional.
//   - NoUnknownFields(): refuse a payload with a field the shape does not
//     name, which Decode would ignore; the default of ShapeOf, undone by
//     AllowUnknownFields().
//   - Entity(name): the entity type the handler reads and writes, when it
//     is not the handler name up to the first dot.
//   - Internal(): only jobs emitted by other handlers run the handler;
//     submit and call refuse it.
//
// # Testing without a cluster
//
// A *Plugin is a pluginpb.HandlerServer, so a test calls it in process,
// the way the worker does over gRPC: Plugin.Describe shows what the plugin
// declares, and Plugin.Handle runs a batch and returns one pluginpb.Outcome
// per job, which holds everything the job would commit: its Status (OK,
// RETRY, FAIL or REJECTED), State when StateChanged, Result, Emits, for
// RETRY or FAIL its Error and RetryAfterMs, and for REJECTED the reason in
// its Error.
//
//	p := sdk.New("counters", "test", sdk.Handler("counter.add", sdk.Typed(add)))
//	resp, err := p.Handle(ctx, &pluginpb.HandleRequest{
//		Entities: []*pluginpb.Entity{{Type: "counter", Key: "apples", State: []byte(`{"total":1}`)}},
//		Jobs:     []*pluginpb.Job{{Id: "j1", Handler: "counter.add", Key: "apples", Payload: []byte(`{"n":2}`), Attempt: 1}},
//	})
//	// resp.Outcomes[0]: Status OK, State {"total":3}, Result {"total":3}
//
// What the worker does with outcomes (backoff, counting attempts,
// dead-lettering, relaying emits) and with declarations (checking shapes,
// refusing internal handlers) is not part of Handle; set Job.Attempt
// to test a handler's behaviour on a later attempt (it is 0 when unset).
// Call.Query needs the worker's query service: under a bare Handle call it
// returns ErrNoHost, and the job is retried. To test a handler that
// queries, serve the plugin through go-plugin's plugin.TestPluginGRPCConn
// with a plugins.GRPCPlugin whose Host is a fake pluginpb.HostServer, as
// TestQueryInProcess in this package's tests does.
//
// The package's examples run as tests and show each of these in process.
//
// # Logs and profiles
//
// Under Serve, slog's default logger (and with it the log package) writes
// to the worker's log, which adds plugin=NAME to each line and keeps its
// level; Call.Logger adds the job's id, handler and key. Setting
// CORRAL_PLUGIN_CPUPROFILE=path in the worker's environment makes each
// plugin process write a CPU profile of its first 10 seconds to
// path.PID (CORRAL_PLUGIN_CPUPROFILE_SECONDS changes the length).
package sdk
