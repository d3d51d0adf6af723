package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/corralhq/corral/internal/keys"
)

// ConsumerPlace is where a handler's subscription to a topic is: after
// FromMs in every partition, and after Positions in those it has read.
type ConsumerPlace struct {
	FromMs    int64
	Positions map[int]string
}

// ConsumerAt reads a subscription's place, kept in partition home; ok is
// false when it has none yet.
func (s *Store) ConsumerAt(ctx context.Context, home int, handler, topic string) (ConsumerPlace, bool, error) {
	h, err := s.rdb.HGetAll(ctx, keys.For(home).Consumer(handler, topic)).Result()
	if err != nil {
		return ConsumerPlace{}, false, fmt.Errorf("store: read consumer %s of %s: %w", handler, topic, err)
	}
	place := ConsumerPlace{Positions: map[int]string{}}
	from, ok := h["from"]
	if !ok {
		return place, false, nil
	}
	place.FromMs, _ = strconv.ParseInt(from, 10, 64)
	for f, v := range h {
		if p, err := strconv.Atoi(f); err == nil {
			place.Positions[p] = v
		}
	}
	return place, true, nil
}

// SaveConsumer records a subscription's place: FromMs and the positions
// given (others are kept).
func (s *Store) SaveConsumer(ctx context.Context, home int, handler, topic string, place ConsumerPlace) error {
	vals := []any{"from", place.FromMs}
	for p, id := range place.Positions {
		vals = append(vals, strconv.Itoa(p), id)
	}
	if err := s.rdb.HSet(ctx, keys.For(home).Consumer(handler, topic), vals...).Err(); err != nil {
		return fmt.Errorf("store: save consumer %s of %s: %w", handler, topic, err)
	}
	return nil
}
