package discovery

import (
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestSameMembers(t *testing.T) {
	t.Parallel()
	a := Member{ID: "a", Address: "10.0.0.1:7000", Meta: map[string]string{"partitions": "64"}}
	b := Member{ID: "b", Address: "10.0.0.2:7000"}
	for _, tc := range []struct {
		name string
		x, y []Member
		same bool
	}{
		{"both empty", nil, []Member{}, true},
		{"equal", []Member{a, b}, []Member{a, b}, true},
		{"nil and empty meta", []Member{{ID: "b", Address: b.Address, Meta: map[string]string{}}}, []Member{b}, true},
		{"one joined", []Member{a}, []Member{a, b}, false},
		{"one left", []Member{a, b}, []Member{b}, false},
		{"replaced", []Member{a}, []Member{b}, false},
		{"moved", []Member{a}, []Member{{ID: "a", Address: "10.0.0.9:7000", Meta: a.Meta}}, false},
		{"meta changed", []Member{a}, []Member{{ID: "a", Address: a.Address, Meta: map[string]string{"partitions": "128"}}}, false},
		{"meta dropped", []Member{a}, []Member{{ID: "a", Address: a.Address}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameMembers(tc.x, tc.y); got != tc.same {
				t.Errorf("sameMembers(%v, %v) = %v, want %v", tc.x, tc.y, got, tc.same)
			}
			if got := sameMembers(tc.y, tc.x); got != tc.same {
				t.Errorf("sameMembers is not symmetric for %v, %v", tc.x, tc.y)
			}
		})
	}
}

func TestMembersFromEntries(t *testing.T) {
	t.Parallel()
	node := &api.Node{Address: "192.168.1.5"}
	meta := map[string]string{"partitions": "64"}
	entries := []*api.ServiceEntry{
		{Node: node, Service: &api.AgentService{ID: "w2", Address: "10.0.0.2", Port: 7002}},
		{Node: node, Service: &api.AgentService{ID: "w1", Address: "", Port: 7001, Meta: meta}},
		{Node: node, Service: &api.AgentService{ID: "w3", Address: "fd00::3", Port: 7003}},
		{Node: node}, // no service: ignored
	}
	got := membersFromEntries(entries)
	want := []Member{
		{ID: "w1", Address: "192.168.1.5:7001", Meta: meta},
		{ID: "w2", Address: "10.0.0.2:7002"},
		{ID: "w3", Address: "[fd00::3]:7003"},
	}
	if !sameMembers(got, want) {
		t.Fatalf("membersFromEntries = %v, want %v", got, want)
	}
	got[0].Meta["partitions"] = "changed"
	if meta["partitions"] != "64" {
		t.Fatal("members share their meta map with Consul's answer")
	}
}

func TestDuplicateIDs(t *testing.T) {
	t.Parallel()
	ms := []Member{{ID: "a"}, {ID: "a"}, {ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "c"}}
	got := duplicateIDs(ms)
	if len(got) != 2 || got[0] != "a" || got[1] != "c" {
		t.Fatalf("duplicateIDs = %v, want [a c]", got)
	}
}

func TestNextIndex(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ prev, got, want uint64 }{
		{0, 42, 42},  // first answer
		{42, 42, 42}, // wait timed out, nothing changed
		{42, 50, 50}, // a change
		{42, 7, 0},   // went backwards: agent or cluster state reset
		{0, 0, 1},    // 0 would never block
		{42, 0, 0},   // backwards to 0: start again
		{1, 0, 0},    // likewise
		{0, 1, 1},    // smallest real index
		{100, 100, 100},
	} {
		if got := nextIndex(tc.prev, tc.got); got != tc.want {
			t.Errorf("nextIndex(%d, %d) = %d, want %d", tc.prev, tc.got, got, tc.want)
		}
	}
}

func TestNextBackoffGrowsAndCaps(t *testing.T) {
	t.Parallel()
	var d time.Duration
	for i := 0; i < 20; i++ {
		d = nextBackoff(d)
		if d < firstBackoff*4/5 || d > maxBackoff*6/5 {
			t.Fatalf("step %d: backoff %v outside [%v, %v]", i, d, firstBackoff*4/5, maxBackoff*6/5)
		}
	}
	if d < maxBackoff*4/5 {
		t.Fatalf("backoff after 20 failures is %v, want about %v", d, maxBackoff)
	}
}

func TestUnknownCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{api.StatusError{Code: 404, Body: `Unknown check ID "corral-loop:w1".`}, true},
		{api.StatusError{Code: 500, Body: `CheckID "x" does not have associated TTL`}, true},
		{api.StatusError{Code: 500, Body: "rpc error"}, false},
		{api.StatusError{Code: 403, Body: "Permission denied"}, false},
		{errTest("connection refused"), false},
	} {
		if got := unknownCheck(tc.err); got != tc.want {
			t.Errorf("unknownCheck(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
