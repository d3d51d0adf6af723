package testenv

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fatalTB records the message of Fatalf and ends its goroutine, as the
// real one does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	t.Parallel()
	calls := 0
	Eventually(t, 10*time.Second, func() error {
		if calls++; calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}

func TestEventuallyReportsWhatItLastSaw(t *testing.T) {
	t.Parallel()
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	calls := 0
	go func() {
		defer close(done)
		Eventually(f, 50*time.Millisecond, func() error {
			calls++
			return fmt.Errorf("seen %d", calls)
		})
	}()
	<-done
	if want := fmt.Sprintf("seen %d", calls); !strings.Contains(f.msg, want) || !strings.Contains(f.msg, "50ms") {
		t.Fatalf("failure says %q, want the timeout and the last error %q", f.msg, want)
	}
}
