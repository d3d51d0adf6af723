package cli

import "testing"

func TestAttempts(t *testing.T) {
	for n, want := range map[int32]string{0: "0 attempts", 1: "1 attempt", 2: "2 attempts"} {
		if got := Attempts(n); got != want {
			t.Errorf("Attempts(%d) = %q, want %q", n, got, want)
		}
	}
}
