// Package sdk turns a few Go functions into a Corral handler plugin.
//
// A plugin is a program whose main hands its handlers to Serve:
//
//	func main() {
//		sdk.Serve(sdk.Handler("donor.donate", donate))
//	}
//
// Serve names the plugin after the program and versions it from the build;
// sdk.New("name", "version", handlers...).Serve() chooses both. The worker launches the program, asks it which
// handlers it serves, and sends it batches of jobs. Each handler sees one
// job through a Call: it decodes the payload, loads and saves the state of
// the job's entity (the entity type is the handler name up to the first
// dot, or the one the handler declares with Entity; the entity key is the
// job key), emits follow-up jobs and sets a result for the submitter.
//
//	package main
//
//	import (
//		"time"
//
//		"github.com/corralhq/corral/plugins/sdk"
//	)
//
//	type Deposit struct {
//		Cents int64 `json:"cents"`
//	}
//
//	type Account struct {
//		BalanceCents int64 `json:"balance_cents"`
//	}
//
//	func deposit(c *sdk.Call) error {
//		var d Deposit
//		if err := c.Decode(&d); err != nil {
//			return err // a malformed payload is dead-lettered, not retried
//		}
//		if d.Cents <= 0 {
//			return sdk.Failf("deposit must be positive, got %d", d.Cents)
//		}
//		var a Account
//		if _, err := c.Load(&a); err != nil {
//			return err // retried
//		}
//		a.BalanceCents += d.Cents
//		if err := c.Save(a); err != nil {
//			return err
//		}
//		return c.SetResult(a)
//	}
//
//	func main() {
//		sdk.New("bank", "1.0.0",
//			sdk.Handler("account.deposit", deposit, sdk.Timeout(5*time.Second), sdk.MaxAttempts(5),
//				sdk.ShapeOf[Deposit]()),
//		).Serve()
//	}
//
// Options declare, per handler, what the worker should know in Describe:
// Timeout (deadline of a batch call), MaxAttempts (before dead-lettering),
// Concurrency (a hint of batches at once), Entity (the entity type, when
// the name does not start with it), Internal (only other handlers' emitted
// jobs run it) and the payload's shape (PayloadShape and OptionalFields, or
// ShapeOf a struct; NoUnknownFields, the default of ShapeOf, refuses other
// fields), which the worker checks at submit.
//
// Typed, Payload and State are the typed JSON helpers: Typed turns
// func(c, payload P, state S) (S, error) into a handler that decodes,
// loads and saves for you. One binary may serve any number of handlers of
// any entity types.
//
// What a handler returns decides the job's fate: nil commits the job's
// state, result and emits; an error made with Reject or Rejectf finishes
// the job with that reason as its answer (a business "no": never retried,
// never dead-lettered); an error made with Fail or Failf dead-letters the
// job; an error made with RetryAfter retries it after a delay; any other
// error, and a panic, retries it as soon as the worker can. Only a job that
// returns nil changes anything: the state a rejected, failed or retried job
// saved is thrown away.
//
// Jobs of one batch run one after another in order, and a job sees the
// state saved by earlier successful jobs of the same entity in that batch.
// Handlers must not have side effects outside their Call: the worker may
// run a batch again after a crash, and only the replies are committed.
//
// A Plugin is a pluginpb.HandlerServer, so tests can call Handle on it
// directly without starting a process.
package sdk
