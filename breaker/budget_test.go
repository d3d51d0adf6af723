package breaker

import "testing"

func TestBudgetCapsRetriesAtRatio(t *testing.T) {
	t.Parallel()
	b, err := NewBudget(0.1, 5)
	if err != nil {
		t.Fatal(err)
	}
	retries := 0
	for range 1000 {
		b.Called()
		// Every call fails and wants a retry: only the budget holds them back.
		if b.TryRetry() {
			retries++
		}
	}
	// 5 in reserve plus 0.1 per call.
	if retries < 100 || retries > 105 {
		t.Fatalf("1000 failing calls got %d retries, want about 10%% (100..105)", retries)
	}
}

func TestBudgetReserveIsCapped(t *testing.T) {
	t.Parallel()
	b, _ := NewBudget(0.5, 3)
	for range 100 {
		b.Called() // a long quiet, healthy period
	}
	n := 0
	for b.TryRetry() {
		n++
	}
	if n != 3 {
		t.Fatalf("after a healthy period the budget allowed %d retries in a row, want the reserve of 3", n)
	}
}

func TestNewBudgetRejectsBadSettings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ ratio, reserve float64 }{{0, 10}, {1.5, 10}, {0.1, 0}} {
		if _, err := NewBudget(c.ratio, c.reserve); err == nil {
			t.Errorf("NewBudget(%v, %v) accepted bad settings", c.ratio, c.reserve)
		}
	}
}
