package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/keys"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/testenv"
)

var luaName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// TestCommitSectionsBindWhatTheyUse: each section's Lua reads its item
// through the names the table gives it, every one of them and nothing
// else: no KEYS[...] or ARGV[...] of its own, and no name that hides a
// partition key or a header arg.
func TestCommitSectionsBindWhatTheyUse(t *testing.T) {
	shared := map[string]bool{}
	for _, fk := range commitFixedKeys {
		shared[fk.name] = true
	}
	for _, n := range commitHeaderArgs {
		shared[n] = true
	}
	if len(shared) != len(commitFixedKeys)+numHeaderArgs {
		t.Errorf("partition keys and header args share a name: %v", shared)
	}
	seen := map[string]bool{}
	for i, s := range commitSections {
		if s.name == "" || seen[s.name] || s.each == "" || len(s.args) == 0 {
			t.Errorf("section %d (%q) needs a name of its own, Lua and at least one arg", i, s.name)
		}
		seen[s.name] = true
		code := s.each + s.after
		if strings.Contains(code, "KEYS[") || strings.Contains(code, "ARGV[") {
			t.Errorf("section %s indexes KEYS or ARGV itself", s.name)
		}
		names := map[string]bool{}
		for _, n := range append(append([]string{}, s.keys...), s.args...) {
			if !luaName.MatchString(n) || names[n] || shared[n] {
				t.Errorf("section %s: item name %q is not a Lua name, repeated, or hides a shared one", s.name, n)
			}
			names[n] = true
			if !regexp.MustCompile(`\b` + n + `\b`).MatchString(s.each) {
				t.Errorf("section %s never uses its item's %q", s.name, n)
			}
		}
	}
}

// TestCommitLayoutAgrees lays out a batch that uses every section, then
// reads KEYS and ARGV back by the table, as the script does, and checks
// that every item's keys and args are the ones its names say.
func TestCommitLayoutAgrees(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Audit = true
	s := New(nil, cfg)
	p, now := 3, int64(1_700_000_000_000)
	k := keys.For(p)
	grant := lease.Grant{Epoch: 7, Nonce: "n"}
	mk := func(id, key string) Job {
		return Job{ID: id, Handler: "donor.donate", Key: key, Payload: []byte(`{"amount_cents":1}`), Attempt: 1, Partition: p}
	}
	park := mk("b1", "b")
	// Parked waiting for an owner that serves its handler: the body
	// carries when the wait began.
	park.Attempt, park.NotBefore, park.WaitingSince = 2, now+60_000, now-1_000
	dead := mk("c1", "c")
	dead.Attempt = 3
	credit := Job{ID: EmittedID("p1", 0), Handler: "campaign.credit", Key: "water", SubmittedAt: now - 5}
	later := mk("d1", "d")
	later.SubmittedAt = now + 9
	waiting := mk("w2", "w")
	waiting.Handler, waiting.Attempt, waiting.SubmittedAt = "campaign.credit", 3, now-7
	b := &Batch{
		Guard:    NewGuard(mk("g1", "g"), "donor", []byte(`{"g":0}`), true),
		Done:     []string{"g1", "a1", "h1", credit.ID},
		Jobs:     []Job{credit},
		Attempts: map[string]int{"h1": 2},
		Dead:     []DeadJob{{Job: dead, Error: "no"}},
		Rejected: []Rejection{{JobID: "r1", Attempts: 2, Reason: "out of stock: 3 left"}},
		Acked:    []string{"5-0", "5-1", "6-0"},
		States: []StateWrite{{Entity: EntityRef{Type: "donor", Key: "a"}, Value: []byte(`{"a":1}`)},
			{Entity: EntityRef{Type: "donor", Key: "e"}, Value: []byte(`{"e":1}`), Existed: true}},
		Results:  []Result{{JobID: "a1", Value: []byte("ra")}},
		Emits:    []Job{{ID: EmittedID("a1", 0), Handler: "campaign.credit", Key: "c", Payload: []byte(`{}`)}},
		Unparked: []string{"h1"},
		Keys: []KeyPlan{
			{Key: "b", Park: &park, Front: []Job{mk("b2", "b"), mk("b3", "b")}, Back: []Job{mk("b4", "b")}},
			{Key: "h", Trim: 1, Next: true},
		},
		Cancels: Cancels{
			Cancelled: []Cancellation{{JobID: "x1", Attempts: 1, Error: "attempt 1: boom"}},
			Revoked:   []Job{later},
			Unwaited:  []Job{waiting},
			Settled:   []string{"s1"},
		},
	}
	b.Publications = []Publication{{Topic: "gifts", JobID: "a1", Message: []byte(`{"n":1}`)}}
	s.watchers.saw(p)
	b.StateSteps = []StateWrite{{Entity: EntityRef{Type: "donor", Key: "a"}, Value: []byte(`{"a":0}`)}, b.States[0]}
	ks, args, err := s.commitLayout(p, grant, 0, b, now)
	if err != nil {
		t.Fatal(err)
	}
	str := func(v any) string {
		switch v := v.(type) {
		case string:
			return v
		case []byte:
			return string(v)
		default:
			return fmt.Sprint(v)
		}
	}

	for i, fk := range commitFixedKeys {
		if ks[i] != fk.key(k) {
			t.Errorf("KEYS[%d] = %s, want %s's %s", i+1, ks[i], fk.name, fk.key(k))
		}
	}
	header := map[string]string{}
	for i, n := range commitHeaderArgs {
		header[n] = str(args[i])
	}
	wantHeader := map[string]string{"grant": "7:n", "now": itoa(now), "doneTTL": itoa(int64(cfg.DoneRetention.Seconds())),
		"resultTTL": itoa(int64(cfg.ResultRetention.Seconds())), "auditMax": itoa(cfg.AuditMax), "trimMin": "6-1"}
	for n, want := range wantHeader {
		if header[n] != want {
			t.Errorf("header %s = %q, want %q", n, header[n], want)
		}
	}

	// Read the items back section by section, as the script does.
	items := map[string][]map[string]string{}
	ki, ai := len(commitFixedKeys), numHeaderArgs+numSections
	for i, sec := range commitSections {
		n, err := strconv.Atoi(str(args[numHeaderArgs+i]))
		if err != nil {
			t.Fatalf("count of section %s: %v", sec.name, err)
		}
		for range n {
			if ki+len(sec.keys) > len(ks) || ai+len(sec.args) > len(args) {
				t.Fatalf("section %s runs past KEYS or ARGV", sec.name)
			}
			it := map[string]string{}
			for _, name := range sec.keys {
				it[name], ki = ks[ki], ki+1
			}
			for _, name := range sec.args {
				it[name], ai = str(args[ai]), ai+1
			}
			items[sec.name] = append(items[sec.name], it)
		}
	}
	if ki != len(ks) || ai != len(args) {
		t.Fatalf("the counts account for %d keys and %d args of %d and %d", ki, ai, len(ks), len(args))
	}
	for _, sec := range commitSections {
		if len(items[sec.name]) == 0 {
			t.Errorf("the batch has no %s item: the test must cover every section", sec.name)
		}
	}

	check := func(sec string, i int, name, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s item %d: %s = %q, want %q", sec, i, name, got, want)
		}
	}
	for i, it := range items["guard"] {
		g := b.Guard
		check("guard", i, "stateKey", it["stateKey"], k.State("donor", "g"))
		check("guard", i, "recKey", it["recKey"], k.Job(g.ID))
		check("guard", i, "key", it["key"], g.Entity.Key)
		check("guard", i, "lookahead", it["lookahead"], strconv.Itoa(directLookahead))
		check("guard", i, "hasState", it["hasState"], "1")
		check("guard", i, "state", it["state"], string(g.State))
		check("guard", i, "hash", it["hash"], g.Hash)
	}
	// id, status, attempts, emitted, handler, key, submitted, answer: the
	// handler, key and submission time go to the finished log's item.
	wantFinish := [][8]string{{"g1", "d", "1", "0"}, {"a1", "d", "1", "1", "", "", "", "ra"}, {"h1", "d", "2", "0"},
		{credit.ID, "d", "1", "0", credit.Handler, credit.Key, itoa(credit.SubmittedAt)}, {"c1", "x", "3", "0"},
		{"r1", "n", "2", "0", "", "", "", "out of stock: 3 left"}, {"x1", "c", "1", "0", "", "", "", "attempt 1: boom"}}
	wantAudit := append(append([]string(nil), b.Done...), "r1")
	for sec, n := range map[string]int{"finish": len(wantFinish), "audit": len(wantAudit), "dead": 1, "park": 1,
		"revoke": 1, "unwait": 1, "settle": 2} {
		if len(items[sec]) != n {
			t.Errorf("%d %s items, want %d", len(items[sec]), sec, n)
		}
	}
	var wantLog []loggedJob
	for i, it := range items["finish"] {
		w := wantFinish[i]
		check("finish", i, "recKey", it["recKey"], k.Job(w[0]))
		l := loggedJob{End: w[1], ID: w[0], Handler: w[4], Key: w[5], Meta: true}
		l.SubmittedAt, _ = strconv.ParseInt(w[6], 10, 64) // a job not among the batch's: 0
		wantLog = append(wantLog, l)
		check("finish", i, "status", it["status"], w[1])
		check("finish", i, "tail", it["tail"], " "+w[2]+" "+w[3])
		check("finish", i, "answer", it["answer"], w[7])
	}
	for i, it := range items["revoke"] {
		check("revoke", i, "recKey", it["recKey"], k.Job("d1"))
		check("revoke", i, "id", it["id"], "d1")
		check("revoke", i, "handler", it["handler"], later.Handler)
		check("revoke", i, "key", it["key"], "d")
		check("revoke", i, "submitted", it["submitted"], itoa(later.SubmittedAt))
	}
	for i, it := range items["unwait"] {
		check("unwait", i, "waitKey", it["waitKey"], k.Waiting("w"))
		check("unwait", i, "recKey", it["recKey"], k.Job("w2"))
		check("unwait", i, "id", it["id"], "w2")
		check("unwait", i, "attempts", it["attempts"], "2")
		check("unwait", i, "handler", it["handler"], "campaign.credit")
		check("unwait", i, "key", it["key"], "w")
		check("unwait", i, "submitted", it["submitted"], itoa(waiting.SubmittedAt))
	}
	for i, it := range items["settle"] {
		check("settle", i, "id", it["id"], []string{"x1", "s1"}[i])
	}
	for i, it := range items["audit"] {
		check("audit", i, "id", it["id"], wantAudit[i])
	}
	for i, it := range items["dead"] {
		var rec DeadRecord
		if err := json.Unmarshal([]byte(it["record"]), &rec); err != nil {
			t.Fatalf("dead record: %v", err)
		}
		check("dead", i, "id", it["id"], "c1")
		check("dead", i, "record's id", rec.ID, it["id"])
	}
	for i, it := range items["unpark"] {
		check("unpark", i, "id", it["id"], "h1")
	}
	for i, it := range items["state"] {
		check("state", i, "stateKey", it["stateKey"], k.State("donor", "a"))
		check("state", i, "value", it["value"], `{"a":1}`)
	}
	for i, it := range items["put"] {
		check("put", i, "stateKey", it["stateKey"], k.State("donor", "e"))
		check("put", i, "value", it["value"], `{"e":1}`)
	}
	if got := loggedJobs(map[string]any{"g": str(args[argFinished])}); !reflect.DeepEqual(got, wantLog) {
		t.Errorf("header finishedLog %q reads as %+v, want %+v", str(args[argFinished]), got, wantLog)
	}
	for i, it := range items["ack"] {
		check("ack", i, "streamIDs", it["streamIDs"], strings.Join(b.Acked, " "))
	}
	for i, it := range items["publish"] {
		check("publish", i, "topicKey", it["topicKey"], k.Topic("gifts"))
		check("publish", i, "jobID", it["jobID"], "a1")
		check("publish", i, "message", it["message"], `{"n":1}`)
		check("publish", i, "keepMs", it["keepMs"], itoa(cfg.TopicRetention.Milliseconds()))
	}
	for i, it := range items["watched"] {
		check("watched", i, "watchedKey", it["watchedKey"], k.Watched())
		check("watched", i, "sent", it["sent"], "1")
	}
	for i, it := range items["watch"] {
		check("watch", i, "watchedKey", it["watchedKey"], k.Watched())
		check("watch", i, "stateKey", it["stateKey"], k.State("donor", "a"))
		check("watch", i, "topicKey", it["topicKey"], k.Topic(StateTopic("donor", "a")))
		check("watch", i, "value", it["value"], []string{`{"a":0}`, ""}[i]) // the last one is read back
	}
	for i, it := range items["outbox"] {
		check("outbox", i, "jobs", it["jobs"], string(packEmits(b.Emits)))
	}
	for i, it := range items["trim"] {
		check("trim", i, "waitKey", it["waitKey"], k.Waiting("h"))
		check("trim", i, "n", it["n"], "1")
	}
	// Front items push to the front, so the last of the line comes first.
	for sec, want := range map[string][]string{"front": {"b3", "b2"}, "back": {"b4"}} {
		for i, it := range items[sec] {
			j, err := decodeJob(p, it["body"])
			if err != nil {
				t.Fatalf("%s body: %v", sec, err)
			}
			check(sec, i, "waitKey", it["waitKey"], k.Waiting("b"))
			check(sec, i, "id", it["id"], want[i])
			check(sec, i, "body's id", j.ID, it["id"])
		}
	}
	for i, it := range items["park"] {
		j, err := decodeJob(p, it["body"])
		if err != nil {
			t.Fatalf("park body: %v", err)
		}
		check("park", i, "key", it["key"], "b")
		check("park", i, "id", it["id"], "b1")
		check("park", i, "notBefore", it["notBefore"], itoa(park.NotBefore))
		check("park", i, "body's id", j.ID, it["id"])
		check("park", i, "body's waiting since", itoa(j.WaitingSince), itoa(park.WaitingSince))
	}
	for i, it := range items["next"] {
		check("next", i, "waitKey", it["waitKey"], k.Waiting("h"))
		check("next", i, "key", it["key"], "h")
	}
}

// TestCommitItemOfWrongShape: an item given to a section with another
// shape fails the commit before Redis sees it.
func TestCommitItemOfWrongShape(t *testing.T) {
	var c commitArgs
	c.add(secFinish, nil, "a1", statusDone, " 1 0", "", "", "", "")
	if _, _, err := c.layout(keys.For(0), [numHeaderArgs]any{}); err == nil || !strings.Contains(err.Error(), "finish") {
		t.Fatalf("layout of a finish item without its key: %v, want errCommitLayout", err)
	}
}

// TestCommitScriptChecksLayout: KEYS or ARGV that do not add up to the
// counts are refused before anything is written.
func TestCommitScriptChecksLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	cfg := DefaultConfig()
	s := New(rdb, cfg)
	p := 2
	grant, err := lease.Claim(ctx, rdb, p, "w~1", "")
	if err != nil {
		t.Fatal(err)
	}
	ks, args, err := s.commitLayout(p, grant, 0, &Batch{Done: []string{"a1"}, Results: []Result{{JobID: "a1", Value: []byte("r")}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, run := range map[string]func() error{
		"a key short":  func() error { return commitScript.Run(ctx, rdb, ks[:len(ks)-1], args...).Err() },
		"an arg extra": func() error { return commitScript.Run(ctx, rdb, ks, append(args[:len(args):len(args)], "x")...).Err() },
		"a count short": func() error {
			bad := append([]any{}, args[:numHeaderArgs+numSections-1]...)
			return commitScript.Run(ctx, rdb, ks, bad...).Err()
		},
	} {
		if err := run(); err == nil || !strings.HasPrefix(err.Error(), "LAYOUT") {
			t.Errorf("%s: %v, want a LAYOUT error", name, err)
		}
	}
	if n, _ := rdb.Exists(ctx, keys.For(p).Job("a1")).Result(); n != 0 {
		t.Fatal("a refused commit wrote the job's record")
	}
	if err := commitScript.Run(ctx, rdb, ks, args...).Err(); err != nil {
		t.Fatalf("the commit as laid out: %v", err)
	}
}

// TestPackedKeyAgrees: the guard's Lua reads a packed stream entry's key
// as unpackJob does, whatever the lengths of the fields before it.
func TestPackedKeyAgrees(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	ctx := context.Background()
	rdb := testenv.StartRedis(t).Client(t)
	s := New(rdb, DefaultConfig())
	script := luaPackedKey + "return packedKey(ARGV[1])"
	for _, l := range []struct{ id, handler, key int }{
		{1, 1, 0}, {1, 1, 1}, {127, 127, 127}, {128, 129, 128}, {300, 5, 16383}, {16384, 200, 20000}, {3, 70000, 3},
	} {
		j := Job{ID: strings.Repeat("i", l.id), Handler: strings.Repeat("h", l.handler),
			Key:     strings.Repeat("é", l.key/2) + strings.Repeat("k", l.key%2),
			Payload: []byte(strings.Repeat("p", 200)), Attempt: 2, Errors: []string{"e"}}
		got, err := s.rdb.Eval(ctx, script, nil, string(packJob(&j))).Text()
		if err != nil {
			t.Fatalf("lengths %+v: %v", l, err)
		}
		var back Job
		if err := unpackJob(packJob(&j), &back); err != nil {
			t.Fatal(err)
		}
		if got != j.Key || back.Key != j.Key {
			t.Errorf("lengths %+v: Lua read key of %d bytes, Go %d, want %d", l, len(got), len(back.Key), len(j.Key))
		}
	}
}
