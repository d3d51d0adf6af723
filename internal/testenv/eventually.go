package testenv

import (
	"testing"
	"time"
)

// Eventually calls cond until it returns nil and fails the test when that
// has not happened within timeout, with the last error cond returned: cond
// says what it is waiting for and what it saw instead ("breaker is open,
// want half-open"). It polls often at first, then every 100ms, so a cheap
// condition is seen at once and an expensive one is not hammered.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(pause) // the poll interval
		pause = min(2*pause, 100*time.Millisecond)
	}
}
