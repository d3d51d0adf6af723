package sdk

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnknownHandler begins the error of the FAIL outcome that
// Plugin.Handle gives a job whose handler the plugin does not declare:
// such a job is dead-lettered at once, since retrying cannot help. The
// worker sends a plugin only the handlers it declared, so in practice only
// a test meets it.
var ErrUnknownHandler = errors.New("unknown handler")

// FailError marks a job as failed for good: its outcome is FAIL, and the
// worker dead-letters it at once with its error history, whatever attempts
// are left; the key moves on to its next job. Handlers make one with Fail
// or Failf, and Decode, Payload, Save, SetResult and Emit return one for
// errors that retrying cannot fix.
//
// It is found through wrapping (errors.As), so fmt.Errorf("donate: %w",
// sdk.Fail(err)) fails the job for good too; when an error's chain holds
// a FailError and a RejectError or RetryError, the FailError wins.
type FailError struct {
	Err error // the cause; its message is the dead letter's reason
}

// Error is the cause's message, without anything added.
func (e *FailError) Error() string { return e.Err.Error() }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *FailError) Unwrap() error { return e.Err }

// Fail marks err as permanent: a handler that returns it has its job
// dead-lettered at once, with err's message as the reason. Use it for
// input that will never become good (a failed validation, a reference to
// something that cannot exist), and return other errors as they are, to
// be retried:
//
//	if err := d.Validate(); err != nil {
//		return sdk.Fail(err)
//	}
//
// Fail(nil) still fails the job, with the reason "job failed".
func Fail(err error) error {
	if err == nil {
		err = errors.New("job failed")
	}
	return &FailError{Err: err}
}

// Failf is Fail(fmt.Errorf(format, args...)).
func Failf(format string, args ...any) error {
	return Fail(fmt.Errorf(format, args...))
}

// RejectError is a business "no": its outcome is REJECTED, with Reason,
// and the worker finishes the job with Reason as its answer, committing
// nothing else of it. Handlers make one with Reject or Rejectf; errors.As
// finds it through wrapping, so fmt.Errorf("reserve: %w",
// sdk.Reject("out of stock")) rejects the job too, with the whole message
// as the reason. When an error's chain holds a FailError as well, the
// FailError wins; a RejectError wins over a RetryError.
type RejectError struct {
	Reason string // the job's answer, as its submitter sees it
}

// Error is the reason, without anything added.
func (e *RejectError) Error() string { return e.Reason }

// Reject refuses the job for a reason of the business (out of stock, over
// a limit, already cancelled), which is the job's answer. The worker
// finishes the job as rejected with reason, commits nothing else of it
// (not the state it saved, its result or its emits), never retries it and
// never dead-letters it; the key moves on to its next job. The submitter
// sees the reason: coordinator call and submit --wait print "job ID was
// rejected: REASON" and exit non-zero, coordinator result does the same
// later, and GetResult and Call report the job REJECTED with the reason as
// its error. A job sent again with the same id, within the dedup window,
// gets the same answer without running again.
//
//	if s.OnHand < in.Qty {
//		return s, sdk.Rejectf("out of stock: %d left", s.OnHand)
//	}
//
// Reject is for an answer, not a failure: return an error to have the job
// tried again (something may change: a timeout, a service down), and Fail
// for a job that can never succeed and someone should look at (a malformed
// payload, a bug), which goes to the dead-letter store. Reject("") rejects
// with the reason "rejected".
func Reject(reason string) error {
	if reason == "" {
		reason = "rejected"
	}
	return &RejectError{Reason: reason}
}

// Rejectf is Reject(fmt.Sprintf(format, args...)).
func Rejectf(format string, args ...any) error {
	return Reject(fmt.Sprintf(format, args...))
}

// RetryError asks the worker to try a job again no sooner than After from
// now: its outcome is RETRY, with RetryAfterMs. It is a failed attempt
// like any error: it counts towards MaxAttempts, and after the last
// attempt the job is dead-lettered. Handlers make one with RetryAfter;
// errors.As finds it through wrapping.
type RetryError struct {
	Err   error         // the cause, recorded in the job's error history
	After time.Duration // the least wait before the next attempt
}

// Error is the cause's message, without anything added.
func (e *RetryError) Error() string { return e.Err.Error() }

// Unwrap returns the cause, for errors.Is and errors.As.
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter fails this attempt of the job and asks for the next one no
// sooner than d from now. Use it when the cause says when to come back,
// e.g. a rate limit's window; for other temporary errors, return the
// error as is and the worker's backoff applies.
//
//	return sdk.RetryAfter(fmt.Errorf("campaign %s not open yet", id), time.Minute)
//
// The job waits the longer of d (rounded up to a whole millisecond) and
// the worker's backoff (200 ms, doubling per attempt up to 1 min,
// jittered), and holds its key meanwhile: the key's later jobs wait
// behind it. The attempt counts towards MaxAttempts. A negative d counts
// as 0, and a nil err becomes "retry requested".
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	if d < 0 {
		d = 0
	}
	return &RetryError{Err: err, After: d}
}

// panicError is what a recovered handler panic becomes: a retry, because a
// panic is usually a bug the next release fixes rather than bad input.
type panicError struct {
	value any
}

func (e *panicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.value) }
