package sdk

import (
	"errors"
	"fmt"
	"time"
)

// ErrUnknownHandler is the reason given for a job whose handler this plugin
// does not serve. Such a job fails at once: retrying cannot help.
var ErrUnknownHandler = errors.New("unknown handler")

// FailError marks a job as failed for good: the worker dead-letters it
// instead of retrying. Handlers make one with Fail or Failf; errors.As finds
// it through wrapping.
type FailError struct {
	Err error
}

func (e *FailError) Error() string { return e.Err.Error() }
func (e *FailError) Unwrap() error { return e.Err }

// Fail marks err as permanent, so the job is dead-lettered with err's
// message. Fail(nil) still fails the job: calling Fail says the job failed.
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

// RejectError is a business "no": the job is finished with Reason as its
// answer and commits nothing else. Handlers make one with Reject or
// Rejectf; errors.As finds it through wrapping.
type RejectError struct {
	Reason string
}

func (e *RejectError) Error() string { return e.Reason }

// Reject refuses the job for a reason of the business (out of stock, over
// a limit, already cancelled), which is the job's answer: the worker
// finishes the job as rejected with reason, commits nothing else of it
// (not the state it saved, its result or its emits), never retries it and
// never dead-letters it. The submitter sees the reason: `coordinator call`
// and `submit --wait` print it and exit non-zero, GetResult reports the
// job REJECTED with it, and a job sent again with the same id gets the
// same answer.
//
//	if s.OnHand < in.Qty {
//		return s, sdk.Rejectf("out of stock: %d left", s.OnHand)
//	}
//
// Reject is for an answer, not a failure: return an error to have the job
// tried again (something may change: a timeout, a service down), and Fail
// for a job that can never succeed and someone should look at (a malformed
// payload, a bug), which goes to the dead-letter store.
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

// RetryError asks the worker to retry a job no sooner than After from now.
// Handlers make one with RetryAfter.
type RetryError struct {
	Err   error
	After time.Duration
}

func (e *RetryError) Error() string { return e.Err.Error() }
func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter retries the job after d, e.g. when a rate limit says when to
// come back. A nil err becomes a generic "retry requested".
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
