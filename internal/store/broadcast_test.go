package store_test

import (
	"context"
	"testing"
	"time"
)

// TestBroadcastRecords: a member claims a broadcast id once; a second
// claim finds the run's record; a failed run's claim is dropped.
func TestBroadcastRecords(t *testing.T) {
	s := setup(t)
	ctx := context.Background()
	ok, _, err := s.ClaimBroadcast(ctx, "w1", "b1", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first claim: %v %v", ok, err)
	}
	ok, rec, err := s.ClaimBroadcast(ctx, "w1", "b1", time.Minute)
	if err != nil || ok || rec.Done {
		t.Fatalf("claim while running: %v %+v %v", ok, rec, err)
	}
	if ok, _, _ := s.ClaimBroadcast(ctx, "w2", "b1", time.Minute); !ok {
		t.Fatal("another member could not claim the id")
	}
	if err := s.FinishBroadcast(ctx, "w1", "b1", []byte(`{"n":1}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	ok, rec, err = s.ClaimBroadcast(ctx, "w1", "b1", time.Minute)
	if err != nil || ok || !rec.Done || string(rec.Result) != `{"n":1}` {
		t.Fatalf("claim after the run: %v %+v %v", ok, rec, err)
	}
	if err := s.ForgetBroadcast(ctx, "w2", "b1"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := s.ClaimBroadcast(ctx, "w2", "b1", time.Minute); !ok {
		t.Fatal("a forgotten claim could not be claimed again")
	}
}
