package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
)

// fakeSource is a two-member cluster whose counters the test moves.
type fakeSource struct {
	mu        sync.Mutex
	committed int64
	retried   int64
}

func (f *fakeSource) Status(ctx context.Context) (*workerpb.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &workerpb.StatusResponse{Partitions: 4, TotalDepth: 7, Members: []*workerpb.MemberStatus{
		{Id: "a", Committed: f.committed, Retried: f.retried, LeaseRemainingMs: 900,
			Partitions: []*workerpb.PartitionStatus{{Partition: 0, Epoch: 3, Depth: 5}, {Partition: 1, Epoch: 1, Depth: 2}}},
		{Id: "b", Error: "unavailable"},
	}}, nil
}

func (f *fakeSource) Holders(ctx context.Context) ([]Holder, error) {
	return []Holder{{"a", "a", 3}, {"a", "a", 1}, {"b", "a", 2}, {}}, nil
}

func (f *fakeSource) DeadLetters(ctx context.Context, limit int, after string) ([]DeadLetter, string, error) {
	return []DeadLetter{{ID: "j1", Handler: "h", Key: "k", Errors: []string{"boom"}, PayloadBytes: 3}}, "", nil
}

func TestClusterView(t *testing.T) {
	s := New("a", &fakeSource{})
	defer s.Stop()
	var v ClusterView
	get(t, s, "/ui/api/cluster", &v)
	if len(v.Cells) != 4 || v.Cells[0].Owner != "a" || v.Cells[0].Epoch != 3 || v.Cells[0].Depth != 5 {
		t.Fatalf("cells %+v", v.Cells)
	}
	if c := v.Cells[2]; c.Owner != "b" || c.RingOwner != "a" || c.Depth != -1 {
		t.Errorf("moving cell %+v: want owner b, ring owner a, depth unknown", c)
	}
	if v.Members[0].Health != "ok" || v.Members[1].Health != "unreachable" || v.TotalDepth != 7 {
		t.Errorf("members %+v total %d", v.Members, v.TotalDepth)
	}
}

// TestSamplerRates: a sample is the counters' movement per second; the
// first after a gap only sets the baseline, and a restarted member's count
// is new work, not a negative rate.
func TestSamplerRates(t *testing.T) {
	src := &fakeSource{committed: 100}
	now := time.Unix(1000, 0)
	s := newSampler(src, "a", 3, func() time.Time { return now })
	s.collect()
	step := func(committed, retried int64) {
		src.mu.Lock()
		src.committed, src.retried = committed, retried
		src.mu.Unlock()
		now = now.Add(time.Second)
		s.collect()
	}
	step(150, 2)
	step(20, 2) // restarted: 20 new, its retried count restarts too
	got := s.samples()
	if len(got) != 2 || got[0].Committed != 50 || got[0].Retried != 2 || got[1].Committed != 20 || got[1].Retried != 2 {
		t.Fatalf("samples %+v", got)
	}
	for range 5 {
		step(20, 2)
	}
	if got := s.samples(); len(got) != 3 {
		t.Errorf("ring holds %d samples, want its capacity 3", len(got))
	}
	now = now.Add(time.Minute) // nobody looked
	step(500, 2)
	if got := s.samples(); got[len(got)-1].Committed != 0 {
		t.Errorf("sample after a gap %+v, want only a baseline", got[len(got)-1])
	}
}

func TestReadOnlyAndAssets(t *testing.T) {
	s := New("a", &fakeSource{})
	defer s.Stop()
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(m, "/ui/api/dead", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, rec.Code)
		}
	}
	for path, want := range map[string]string{"/ui/": "<title>Corral</title>", "/ui/app.js": "api/cluster", "/ui/style.css": "#map"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET %s: %d, body lacks %q", path, rec.Code, want)
		}
		if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
	}
	var dead struct{ Dead []DeadLetter }
	get(t, s, "/ui/api/dead?limit=10", &dead)
	if len(dead.Dead) != 1 || dead.Dead[0].PayloadBytes != 3 {
		t.Errorf("dead %+v", dead)
	}
}

func get(t *testing.T, h http.Handler, path string, v any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != 200 {
		t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatal(err)
	}
}
