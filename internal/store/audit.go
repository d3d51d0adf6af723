package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
)

// AuditEntry is one audited commit of one job (see Config.Audit).
type AuditEntry struct {
	At time.Time // Redis clock when the commit was accepted (the stream id)
	lease.Grant
	JobID string
}

// AuditLog reads the audit entries of partition accepted at or after since
// (all of them for the zero time), oldest first, and how many entries the
// cap (Config.AuditMax) ever dropped from the partition's stream.
func (s *Store) AuditLog(ctx context.Context, partition int, since time.Time) (entries []AuditEntry, trimmed int64, err error) {
	k := keys.For(partition).Audit()
	from := "-"
	if !since.IsZero() {
		from = strconv.FormatInt(since.UnixMilli(), 10)
	}
	msgs, err := s.rdb.XRange(ctx, k, from, "+").Result()
	if err != nil {
		return nil, 0, fmt.Errorf("store: read the audit of partition %d: %w", partition, err)
	}
	if len(msgs) > 0 {
		// Nothing deletes audit entries but the cap: what was ever added
		// and is not there was trimmed.
		info, err := s.rdb.XInfoStream(ctx, k).Result()
		if err != nil {
			return nil, 0, fmt.Errorf("store: audit stream info of partition %d: %w", partition, err)
		}
		trimmed = max(info.EntriesAdded-info.Length, 0)
	}
	entries = make([]AuditEntry, 0, len(msgs))
	for _, m := range msgs {
		ms, _, _ := strings.Cut(m.ID, "-")
		t, _ := strconv.ParseInt(ms, 10, 64)
		e := AuditEntry{At: time.UnixMilli(t)}
		e.Grant, _ = lease.ParseGrant(fmt.Sprint(m.Values["e"]))
		e.JobID, _ = m.Values["id"].(string)
		entries = append(entries, e)
	}
	return entries, trimmed, nil
}
