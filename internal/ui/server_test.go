package ui

import (
	"context"
	"encoding/json"
	"errors"
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
	replayed  []string
	listed    *workerpb.ListJobsRequest
}

func (f *fakeSource) Status(ctx context.Context) (*workerpb.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &workerpb.StatusResponse{Partitions: 4, TotalDepth: 7, Members: []*workerpb.MemberStatus{
		{Id: "a", Committed: f.committed, Retried: f.retried, LeaseRemainingMs: 900,
			Partitions: []*workerpb.PartitionStatus{{Partition: 0, Epoch: 3, Depth: 5}, {Partition: 1, Epoch: 1, Depth: 2}}},
		{Id: "b", Error: "unavailable"},
	}, RecentEvents: []*workerpb.TopicMessage{
		{Id: "1700000000000-0", Message: []byte(`{"kind":"member.joined","member":"b"}`)},
		{Id: "1700000000500-0", Message: []byte(`not json`)},
	}}, nil
}

func (f *fakeSource) Holders(ctx context.Context) ([]Holder, error) {
	return []Holder{{"a", "a", 3}, {"a", "a", 1}, {"b", "a", 2}, {}}, nil
}

func (f *fakeSource) DeadLetters(ctx context.Context, limit int, after string) ([]DeadLetter, string, error) {
	return []DeadLetter{{ID: "j1", Handler: "h", Key: "k", Errors: []string{"boom"}, PayloadBytes: 3}}, "", nil
}

func (f *fakeSource) DeadLetter(ctx context.Context, id string) (*DeadLetter, error) {
	if id != "j1" {
		return nil, nil
	}
	return &DeadLetter{ID: "j1", Handler: "h", Key: "k", Errors: []string{"attempt 1: a", "attempt 2: boom"}, PayloadBytes: 3}, nil
}

func (f *fakeSource) ReplayDead(ctx context.Context, ids []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replayed = append(f.replayed, ids...)
	return len(ids), nil
}

func (f *fakeSource) PurgeDead(ctx context.Context, ids []string) (int, error) { return len(ids), nil }

func (f *fakeSource) ListJobs(ctx context.Context, req *workerpb.ListJobsRequest) (*workerpb.ListJobsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = req
	return &workerpb.ListJobsResponse{Jobs: []*workerpb.JobInfo{{Id: "j2", State: req.State, Handler: req.Handler, Key: "k", Payload: []byte(`{"secret":1}`)}}, Next: "c"}, nil
}

func (f *fakeSource) GetJobs(ctx context.Context, ids []string) ([]*workerpb.JobInfo, error) {
	var out []*workerpb.JobInfo
	for _, id := range ids {
		if id == "j2" {
			out = append(out, &workerpb.JobInfo{Id: id, State: workerpb.JobResult_DONE, Attempts: 1, Result: []byte(`{"total":3}`), Payload: []byte(`{"secret":1}`)})
		} else {
			out = append(out, &workerpb.JobInfo{Id: id, State: workerpb.JobResult_UNKNOWN})
		}
	}
	return out, nil
}

func (f *fakeSource) Emitted(ctx context.Context, id string) ([]*workerpb.JobInfo, error) {
	return []*workerpb.JobInfo{{Id: id + "~0", State: workerpb.JobResult_QUEUED, Handler: "campaign.credit"}}, nil
}

func TestClusterView(t *testing.T) {
	s := New("a", &fakeSource{}, Actions{Allowed: true})
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
	if len(v.Events) != 2 || v.Events[0].AtMs != 1700000000000 || string(v.Events[0].Event) != `{"kind":"member.joined","member":"b"}` ||
		!strings.Contains(string(v.Events[1].Event), `"kind":"unreadable"`) {
		t.Errorf("events %+v", v.Events)
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
	s := New("a", &fakeSource{}, Actions{Allowed: true})
	defer s.Stop()
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(m, "/ui/api/dead", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, rec.Code)
		}
		rec = httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(m, "/ui/api/jobs?state=done", nil))
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

func post(h http.Handler, path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestDeadLetterActions: replay and purge take the dashboard's own JSON
// POSTs only, and nothing when the actions are off.
func TestDeadLetterActions(t *testing.T) {
	src := &fakeSource{}
	s := New("a", src, Actions{Allowed: true})
	defer s.Stop()
	own := map[string]string{"Content-Type": "application/json", actionHeader: "replay", "Origin": "http://example.com"}
	if rec := post(s, "/ui/api/dead/replay", `{"ids":["j1"]}`, own); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"count":1`) {
		t.Fatalf("replay: %d %s", rec.Code, rec.Body)
	}
	if len(src.replayed) != 1 || src.replayed[0] != "j1" {
		t.Fatalf("replayed %v", src.replayed)
	}
	for name, h := range map[string]map[string]string{
		"a form post":         {"Content-Type": "application/x-www-form-urlencoded"},
		"no action header":    {"Content-Type": "application/json"},
		"another site's page": {"Content-Type": "application/json", actionHeader: "replay", "Origin": "http://evil.example"},
	} {
		if rec := post(s, "/ui/api/dead/replay", `{"ids":["j1"]}`, h); rec.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", name, rec.Code)
		}
	}
	if rec := post(s, "/ui/api/dead/purge", `{"ids":[]}`, own); rec.Code != http.StatusBadRequest {
		t.Errorf("purge of no ids: %d, want 400", rec.Code)
	}
	var cfg struct{ Actions bool }
	get(t, s, "/ui/api/config", &cfg)
	if !cfg.Actions {
		t.Errorf("config says actions are off")
	}

	off := New("a", src, Actions{Why: "TLS is on"})
	defer off.Stop()
	if rec := post(off, "/ui/api/dead/purge", `{"ids":["j1"]}`, own); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "TLS is on") {
		t.Errorf("purge with actions off: %d %s", rec.Code, rec.Body)
	}
	var offCfg struct {
		Actions    bool
		ActionsOff string `json:"actions_off"`
	}
	get(t, off, "/ui/api/config", &offCfg)
	if offCfg.Actions || offCfg.ActionsOff != "TLS is on" {
		t.Errorf("config %+v", offCfg)
	}
}

// TestJobsAPI: the jobs page's search and detail, with payload sizes and
// never payloads.
func TestJobsAPI(t *testing.T) {
	src := &fakeSource{}
	s := New("a", src, Actions{})
	defer s.Stop()
	var list struct {
		Jobs []Job
		Next string
	}
	get(t, s, "/ui/api/jobs?state=dead&handler=donor.donate&key=k&limit=5", &list)
	if len(list.Jobs) != 1 || list.Jobs[0].State != "dead" || list.Next != "c" || src.listed.Limit != 5 || src.listed.Key != "k" ||
		src.listed.State != workerpb.JobResult_DEAD || list.Jobs[0].PayloadBytes != 12 {
		t.Fatalf("list %+v, asked %v", list, src.listed)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/api/jobs?state=lost", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("unknown state: %d", rec.Code)
	}
	var show struct {
		Job     Job
		Emitted []Job
	}
	get(t, s, "/ui/api/job?id=j2", &show)
	if show.Job.State != "done" || string(show.Job.Result) != `{"total":3}` || len(show.Emitted) != 1 || show.Emitted[0].ID != "j2~0" {
		t.Fatalf("show %+v", show)
	}
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ui/api/job?id=nope", nil))
	if rec.Code != http.StatusNotFound || strings.Contains(rec.Body.String(), "secret") {
		t.Errorf("unknown job: %d %s", rec.Code, rec.Body)
	}
	for _, path := range []string{"/ui/api/jobs?state=done", "/ui/api/job?id=j2"} {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if strings.Contains(rec.Body.String(), "secret") {
			t.Errorf("%s shows a payload: %s", path, rec.Body)
		}
	}
	var d DeadLetter
	get(t, s, "/ui/api/dead/show?id=j1", &d)
	if len(d.Errors) != 2 {
		t.Errorf("dead letter %+v", d)
	}
}

// TestActionsForAdminsOnly: with an Admin check (the worker's: an admin
// client certificate), each request is judged on its own, in the page's
// config and in the action.
func TestActionsForAdminsOnly(t *testing.T) {
	admin := func(r *http.Request) error {
		if r.Header.Get("X-Test-Role") != "admin" {
			return errors.New("the certificate's role is read, not admin")
		}
		return nil
	}
	s := New("a", &fakeSource{}, Actions{Admin: admin, Why: "needs an admin certificate"})
	defer s.Stop()
	h := map[string]string{"Content-Type": "application/json", actionHeader: "purge"}
	if rec := post(s, "/ui/api/dead/purge", `{"ids":["j1"]}`, h); rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "not admin") {
		t.Errorf("purge by a reader: %d %s", rec.Code, rec.Body)
	}
	h["X-Test-Role"] = "admin"
	if rec := post(s, "/ui/api/dead/purge", `{"ids":["j1"]}`, h); rec.Code != 200 {
		t.Errorf("purge by an admin: %d %s", rec.Code, rec.Body)
	}
	req := httptest.NewRequest(http.MethodGet, "/ui/api/config", nil)
	req.Header.Set("X-Test-Role", "admin")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	if !strings.Contains(rec.Body.String(), `"actions":true`) {
		t.Errorf("an admin's config: %s", rec.Body)
	}
	var cfg struct{ Actions bool }
	get(t, s, "/ui/api/config", &cfg)
	if cfg.Actions {
		t.Errorf("a reader's config offers the actions")
	}
}
