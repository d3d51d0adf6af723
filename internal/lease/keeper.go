package lease

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Config sets the lease timing.
type Config struct {
	TTL        time.Duration // how long the lease lives in Redis without renewal
	RenewEvery time.Duration // how often it is renewed
	Margin     time.Duration // trust ends this long before the Redis expiry
}

// DefaultConfig returns timings that detect a dead worker in about a second.
func DefaultConfig() Config {
	return Config{TTL: 1500 * time.Millisecond, RenewEvery: 300 * time.Millisecond, Margin: 300 * time.Millisecond}
}

// Validate reports settings that could let a live worker lose its lease.
func (c Config) Validate() error {
	if c.TTL <= 0 || c.RenewEvery <= 0 || c.Margin < 0 {
		return fmt.Errorf("lease: TTL, renew interval and margin must be positive (got %v, %v, %v)", c.TTL, c.RenewEvery, c.Margin)
	}
	if c.TTL <= 2*c.RenewEvery+c.Margin {
		return fmt.Errorf("lease: TTL (%v) must exceed two renew intervals (%v) plus the safety margin (%v)", c.TTL, c.RenewEvery, c.Margin)
	}
	return nil
}

// Keeper holds one worker's lease. Its token is what partition owner keys
// name, so a restarted worker never inherits its predecessor's claims.
type Keeper struct {
	rdb    redis.UniversalClient
	cfg    Config
	token  string
	value  string
	now    func() time.Time
	logger *slog.Logger

	mu         sync.Mutex
	validUntil time.Time // monotonic: renew start + TTL - margin
	lost       chan struct{}
	healthy    func() bool // renewal is skipped while it returns false

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan struct{}
}

// NewKeeper makes a keeper for token; value is stored for humans (worker id).
// now is the clock (time.Now in production; its monotonic reading is used).
func NewKeeper(rdb redis.UniversalClient, cfg Config, token, value string, now func() time.Time, logger *slog.Logger) (*Keeper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Keeper{rdb: rdb, cfg: cfg, token: token, value: value, now: now, logger: logger, lost: make(chan struct{})}, nil
}

// RenewOnlyWhile makes renewal depend on healthy: while it returns false
// the lease is not renewed and lapses, so a process that answers but cannot
// work (a stuck job loop) lets its partitions go instead of holding them
// forever. Call before Start.
func (k *Keeper) RenewOnlyWhile(healthy func() bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.healthy = healthy
}

// Token is the lease token partition claims are made with.
func (k *Keeper) Token() string { return k.token }

// Start acquires the lease and renews it in the background until Stop.
func (k *Keeper) Start(ctx context.Context) error {
	if err := k.acquire(ctx); err != nil {
		return err
	}
	ctx, k.cancel = context.WithCancel(context.WithoutCancel(ctx))
	k.done = make(chan struct{})
	go k.loop(ctx)
	return nil
}

func (k *Keeper) acquire(ctx context.Context) error {
	start := k.now()
	ok, err := k.rdb.SetNX(ctx, keys.Lease(k.token), k.value, k.cfg.TTL).Result()
	if err != nil {
		return fmt.Errorf("lease: acquire: %w", err)
	}
	if !ok {
		return fmt.Errorf("lease: acquire: token %q already in use", k.token)
	}
	k.extend(start)
	return nil
}

func (k *Keeper) extend(start time.Time) {
	k.mu.Lock()
	k.validUntil = start.Add(k.cfg.TTL - k.cfg.Margin)
	k.mu.Unlock()
}

func (k *Keeper) loop(ctx context.Context) {
	defer close(k.done)
	t := time.NewTicker(k.cfg.RenewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		healthy := k.healthy
		k.mu.Unlock()
		if healthy != nil && !healthy() {
			k.logger.Warn("lease not renewed: this process cannot work; its partitions will move", "token", k.token, "valid_for", k.Remaining())
			continue
		}
		if err := k.renew(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			k.logger.Warn("lease renewal failed", "token", k.token, "err", err, "valid_for", k.Remaining())
		}
	}
}

func (k *Keeper) renew(ctx context.Context) error {
	start := k.now()
	rctx, cancel := context.WithTimeout(ctx, k.cfg.RenewEvery)
	defer cancel()
	// XX: only extend the lease we still hold. Once it has expired, claims
	// made against it may already have moved our partitions.
	ok, err := k.rdb.SetXX(rctx, keys.Lease(k.token), k.value, k.cfg.TTL).Result()
	if err != nil {
		return err
	}
	if !ok {
		k.markLost()
		if buried, _ := Buried(rctx, k.rdb, k.token); buried {
			k.logger.Warn("a peer ended this worker's lease early, taking the worker for dead; taking a lease again and rejoining",
				"token", k.token)
		}
		// A fresh lease with the same token lets the worker claim again;
		// the epochs fence anything it did under the old one.
		if _, err := k.rdb.SetNX(rctx, keys.Lease(k.token), k.value, k.cfg.TTL).Result(); err != nil {
			return err
		}
		k.extend(start)
		return ErrLost
	}
	k.extend(start)
	return nil
}

func (k *Keeper) markLost() {
	k.mu.Lock()
	defer k.mu.Unlock()
	close(k.lost)
	k.lost = make(chan struct{})
}

// Lost is closed when the lease is found expired; ask again for the next one.
func (k *Keeper) Lost() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lost
}

// Valid reports whether the worker may still trust its ownership.
func (k *Keeper) Valid() bool { return k.Remaining() > 0 }

// Remaining is how long the worker may still trust its ownership.
func (k *Keeper) Remaining() time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.validUntil.IsZero() {
		return 0
	}
	return k.validUntil.Sub(k.now())
}

// Stop ends renewal and deletes the lease so claims need not wait for it to
// expire, and announces it on EventsChannel. Safe to call twice or before
// Start.
func (k *Keeper) Stop() {
	k.stopOnce.Do(func() {
		if k.cancel == nil {
			return
		}
		k.cancel()
		<-k.done
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		// Trust ends before the lease disappears, so nothing commits after
		// a peer may have taken over.
		k.mu.Lock()
		k.validUntil = time.Time{}
		k.mu.Unlock()
		pipe := k.rdb.Pipeline()
		pipe.Del(ctx, keys.Lease(k.token))
		pipe.Publish(ctx, EventsChannel, "left "+k.token)
		if _, err := pipe.Exec(ctx); err != nil {
			k.logger.Warn("cannot delete the lease; peers take over when it expires", "token", k.token, "err", err)
		}
		k.mu.Lock()
		k.validUntil = time.Time{}
		k.mu.Unlock()
	})
}

// Alive reports whether the lease of token exists.
func Alive(ctx context.Context, rdb redis.UniversalClient, token string) (bool, error) {
	n, err := rdb.Exists(ctx, keys.Lease(token)).Result()
	return n == 1, err
}
