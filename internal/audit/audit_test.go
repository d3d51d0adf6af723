package audit_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/testenv"
)

// TestAuditStreamIsCapped: the audit stream keeps about --audit-max
// entries per partition, and the checker says what the cap dropped.
func TestAuditStreamIsCapped(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions, cfg.Audit, cfg.AuditMax = 2, true, 150
	s := store.New(rdb, cfg)
	const p, jobs, per = 1, 2000, 100
	epoch, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for b := 0; b < jobs/per; b++ {
		batch := &store.Batch{}
		for i := 0; i < per; i++ {
			id := fmt.Sprintf("j%d", b*per+i)
			batch.Done = append(batch.Done, id)
			ids = append(ids, id)
		}
		if err := s.CommitBatch(ctx, p, epoch, batch); err != nil {
			t.Fatal(err)
		}
	}
	// Trimming is by whole stream nodes (100 entries by default), so the
	// stream holds the cap and at most a node more.
	n := rdb.XLen(ctx, keys.For(p).Audit()).Val()
	if n < cfg.AuditMax || n > cfg.AuditMax+100 {
		t.Fatalf("audit stream holds %d entries after %d commits, want about %d", n, jobs, cfg.AuditMax)
	}
	l, err := audit.Read(ctx, rdb, cfg.Partitions)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Check()
	if !c.OK() || c.Commits != int(n) || c.Trimmed != jobs-n || c.Complete() {
		t.Fatalf("check of a trimmed stream: ok %v, %d commits, %d trimmed, complete %v; want ok, %d, %d, not complete",
			c.OK(), c.Commits, c.Trimmed, c.Complete(), n, jobs-n)
	}
	// The newest commits are all there.
	if m := c.Missing(ids[len(ids)-int(n):]); len(m) != 0 {
		t.Fatalf("recent commits missing: %v", m)
	}
}
