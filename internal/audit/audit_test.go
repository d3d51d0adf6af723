package audit_test

import (
	"context"
	"errors"
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

// TestReadHoldersAndFenced: against a real Redis, the oracle reads what the
// store audited, the holders of every partition, and counts a stale
// owner's commit that Redis refused.
func TestReadHoldersAndFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	cfg := store.DefaultConfig()
	cfg.Partitions, cfg.Audit = 3, true
	s := store.New(rdb, cfg)
	old, err := lease.Claim(ctx, rdb, 2, "w-1~a", "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBatch(ctx, 2, old, &store.Batch{Done: []string{"j1"}}); err != nil {
		t.Fatal(err)
	}
	before, err := audit.Holders(ctx, rdb, cfg.Partitions)
	if err != nil || len(before) != 3 || audit.HeldBy(before, "w-1")[2] != old.Epoch {
		t.Fatalf("holders: %+v %v; want partition 2 held by w-1", before, err)
	}
	cur, err := lease.Claim(ctx, rdb, 2, "w-2~b", "w-1~a")
	if err != nil {
		t.Fatal(err)
	}
	f0, err := audit.FencedRejections(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitBatch(ctx, 2, old, &store.Batch{Done: []string{"j2"}}); !errors.Is(err, lease.ErrFenced) {
		t.Fatalf("stale commit: %v, want ErrFenced", err)
	}
	if err := s.CommitBatch(ctx, 2, cur, &store.Batch{Done: []string{"j2"}}); err != nil {
		t.Fatal(err)
	}
	if f1, err := audit.FencedRejections(ctx, rdb); err != nil || f1 != f0+1 {
		t.Fatalf("fenced rejections: %d then %d (%v); want one more", f0, f1, err)
	}
	after, err := audit.Holders(ctx, rdb, cfg.Partitions)
	if err != nil || audit.Grants(before, after) != 1 {
		t.Fatalf("grants between the readings: %d (%v), want 1", audit.Grants(before, after), err)
	}
	l, err := audit.Read(ctx, rdb, cfg.Partitions)
	if err != nil {
		t.Fatal(err)
	}
	es := l.Partitions[2]
	if len(es) != 2 || es[0].JobID != "j1" || es[0].Grant != old || es[1].JobID != "j2" || es[1].Grant != cur || len(l.Partitions) != 1 {
		t.Fatalf("audit log: %+v; want j1 under %v, then j2 under %v, in partition 2 only", l.Partitions, old, cur)
	}
	if c := l.Check(); !c.OK() || !c.Complete() || len(c.Missing([]string{"j1", "j2"})) != 0 {
		t.Fatalf("check: %+v", c)
	}
}
