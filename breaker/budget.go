package breaker

import (
	"fmt"
	"sync"
)

// Budget caps retries at a fraction of calls, the way Finagle's retry
// budget does: every call deposits Ratio of a token, every retry withdraws
// a whole one. Retries therefore stay near Ratio × calls however many
// callers fail at once, and a dying peer is not hit by a retry storm.
type Budget struct {
	mu     sync.Mutex
	ratio  float64
	max    float64
	tokens float64
}

// NewBudget returns a budget allowing about ratio retries per call, with a
// reserve of tokens (also the cap) so that a quiet caller may still retry.
func NewBudget(ratio, reserve float64) (*Budget, error) {
	if ratio <= 0 || ratio > 1 {
		return nil, fmt.Errorf("breaker: retry ratio must be in (0, 1], got %v", ratio)
	}
	if reserve < 1 {
		return nil, fmt.Errorf("breaker: retry reserve must be at least 1, got %v", reserve)
	}
	return &Budget{ratio: ratio, max: reserve, tokens: reserve}, nil
}

// DefaultBudget allows retries on about 10% of calls, with 10 in reserve.
func DefaultBudget() *Budget {
	b, _ := NewBudget(0.1, 10)
	return b
}

// Called records one call (first attempts only).
func (b *Budget) Called() {
	b.mu.Lock()
	b.tokens = min(b.tokens+b.ratio, b.max)
	b.mu.Unlock()
}

// TryRetry takes a token for one retry; false means the budget is spent
// and the caller must not retry.
func (b *Budget) TryRetry() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
