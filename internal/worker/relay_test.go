package worker

import (
	"testing"
	"time"
)

func TestRelayHoldsBackOff(t *testing.T) {
	t.Parallel()
	h := relayHolds{until: map[int]time.Time{}, delay: map[int]time.Duration{}}
	now := time.Unix(1000, 0)
	var got []time.Duration
	for i := 0; i < 10; i++ {
		got = append(got, h.failed(3, now))
	}
	if got[0] != relayBackoff || got[1] != 2*relayBackoff || got[9] != relayBackoffMax {
		t.Fatalf("backoff %v", got)
	}
	if h.expire(now.Add(relayBackoffMax - time.Millisecond)) {
		t.Fatal("hold ended early")
	}
	if !h.expire(now.Add(relayBackoffMax)) || len(h.until) != 0 {
		t.Fatal("hold did not end")
	}
}
