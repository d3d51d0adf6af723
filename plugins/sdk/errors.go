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
