package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/keys"
	"github.com/redis/go-redis/v9"
)

// A partition's finished log (keys.Partition.Finished) is a stream with
// an entry for each commit that finished jobs, naming them in order. jobs
// list reads done, rejected and cancelled jobs from it, WaitFinished waits
// on it, and jobs show finds in it the handler, key and submission time
// of a job whose record leaves them out (see record.go and
// JobInfo.fromRecord). An entry has one
// field:
//
//	g  each job as "<status><id> <submitted> <hlen> <klen> <handler><key>",
//	   space-separated: its record's status, its id (ids hold no space),
//	   when it was submitted (unix ms; 0: not known), the byte lengths of
//	   its handler and key, then the two, which may hold any bytes ("",
//	   with lengths 0, when not known)
//	f  written by releases before "g": "<status><id>" for each job,
//	   space-separated; their records keep the handler, key and
//	   submission time themselves
//
// An entry's id has the millisecond its jobs' records keep as their finish
// time (see record.go): the commit adds it as "<ms>-*", ms the later of
// Redis's time and the last entry's.

// loggedJob is one job of a finished log's entry.
type loggedJob struct {
	End, ID      string // End: how it ended, a record status
	Handler, Key string
	SubmittedAt  int64
	// Meta says the entry carries Handler, Key and SubmittedAt (a "g"
	// entry); an "f" entry leaves them to the record.
	Meta bool
}

// appendLogged appends a job's item of a finished log's "g" entry to b,
// after a space unless b is empty.
func appendLogged(b []byte, status, id string, submitted int64, handler, key string) []byte {
	if len(b) > 0 {
		b = append(b, ' ')
	}
	b = append(b, status...)
	b = append(b, id...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, submitted, 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(handler)), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(key)), 10)
	b = append(b, ' ')
	b = append(b, handler...)
	return append(b, key...)
}

// loggedJobs reads the jobs of a finished log's entry, of either format.
// A "g" entry cut short or malformed yields the jobs before the fault.
func loggedJobs(values map[string]any) []loggedJob {
	if g, ok := values["g"].(string); ok {
		return parseLogged(g)
	}
	f, _ := values["f"].(string)
	all := strings.Fields(f)
	out := make([]loggedJob, 0, len(all))
	for _, tok := range all {
		if len(tok) > 1 {
			out = append(out, loggedJob{End: tok[:1], ID: tok[1:]})
		}
	}
	return out
}

// parseLogged reads the jobs of a "g" entry.
func parseLogged(g string) []loggedJob {
	var out []loggedJob
	walkLogged(g, func(status, id, submitted, handler, key string) bool {
		at, err := strconv.ParseInt(submitted, 10, 64)
		if err != nil {
			return false
		}
		out = append(out, loggedJob{End: status, ID: id, Handler: handler, Key: key, SubmittedAt: at, Meta: true})
		return true
	})
	return out
}

// appendLoggedIDs appends the ids of the jobs of a "g" entry to b, each
// after a space but the first, and says how many.
func appendLoggedIDs(b []byte, g string) ([]byte, int) {
	n := 0
	walkLogged(g, func(_, id, _, _, _ string) bool {
		if n > 0 {
			b = append(b, ' ')
		}
		b = append(b, id...)
		n++
		return true
	})
	return b, n
}

// walkLogged calls fn with the fields of each job of a "g" entry, in
// order, until fn returns false or an item is cut short or malformed.
func walkLogged(g string, fn func(status, id, submitted, handler, key string) bool) {
	for len(g) > 0 {
		var fields [4]string
		rest := g
		for i := range fields {
			sp := strings.IndexByte(rest, ' ')
			if sp < 0 {
				return
			}
			fields[i], rest = rest[:sp], rest[sp+1:]
		}
		if len(fields[0]) < 2 {
			return
		}
		hl, err2 := strconv.Atoi(fields[2])
		kl, err3 := strconv.Atoi(fields[3])
		if err2 != nil || err3 != nil || hl < 0 || kl < 0 || hl > len(rest) || kl > len(rest)-hl {
			return
		}
		if !fn(fields[0][:1], fields[0][1:], fields[1], rest[:hl], rest[hl:hl+kl]) {
			return
		}
		g = rest[hl+kl:]
		if len(g) > 0 {
			if g[0] != ' ' {
				return
			}
			g = g[1:]
		}
	}
}

// fromLog fills in the handler, key and submission time of the jobs of
// out at idx from their entries in their partitions' finished logs, found
// by their finish times (one XRANGE per millisecond, in one round trip). A
// job whose entry is gone, or has none of it, is left as it is.
func (s *Store) fromLog(ctx context.Context, out []JobInfo, idx []int) error {
	if len(idx) == 0 {
		return nil
	}
	type at struct {
		p  int
		ms int64
	}
	pipe := s.rdb.Pipeline()
	cmds := map[at]*redis.XMessageSliceCmd{}
	for _, i := range idx {
		a := at{out[i].Partition, out[i].FinishedAt}
		if cmds[a] == nil {
			ms := strconv.FormatInt(a.ms, 10)
			cmds[a] = pipe.XRange(ctx, keys.For(a.p).Finished(), ms, ms)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("store: read finished logs: %w", err)
	}
	for _, i := range idx {
		j := &out[i]
		for _, m := range cmds[at{j.Partition, j.FinishedAt}].Val() {
			for _, l := range loggedJobs(m.Values) {
				if l.ID == j.ID && l.Meta {
					j.Handler, j.Key, j.SubmittedAt = l.Handler, l.Key, l.SubmittedAt
				}
			}
		}
	}
	return nil
}
