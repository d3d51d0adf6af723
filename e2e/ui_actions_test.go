package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
)

// TestDashboardReplaysDeadLetter: a job dead-lettered while its plugin
// failed every attempt is replayed from the dashboard's dead-letter page,
// after a confirmation, once a worker whose plugin works has taken over:
// it leaves the list, commits, and the jobs page shows it done with the
// job it emitted. The cluster is plaintext: with TLS on, the dashboard's
// actions are off (TestDashboardInBrowser checks that).
func TestDashboardReplaysDeadLetter(t *testing.T) {
	c := newCluster(t, "--metrics", "127.0.0.1:0", "--partitions", "8")
	c.pki = nil
	plugin := chaosPlugin(t, c)
	c.startWith("w1", plugin, "CORRAL_CHAOS_SEED=1", "CORRAL_CHAOS_FAIL_PERCENT=100")
	cl := c.client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	job := addJob("ui-dead-1", "ui-account", 1, 5, "ui-bucket", "")
	job.MaxAttempts = 1
	submitWithRetry(ctx, t, cl, []*workerpb.Job{job})
	waitDead(t, ctx, cl, job.Id)

	// The plugin is fixed: a worker whose attempts succeed takes over.
	c.startWith("w2", plugin)
	c.signal("w1", syscall.SIGTERM)
	c.waitMembers(func(ids []string) bool { return len(ids) == 1 && ids[0] == "w2" }, "w2 alone")

	url := uiURL(t, c, "w2")
	browser := newBrowser(t)
	if err := chromedp.Do(browser, chromedp.Navigate(url+"#dead")); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	row := `#dead-table tr[data-id="ui-dead-1"]`
	testenv.Eventually(t, 20*time.Second, func() error {
		n, err := pageJS[int](browser, `document.querySelectorAll('`+row+` input.dead-pick:not([disabled])').length`)
		if err != nil || n != 1 {
			return fmt.Errorf("the dead-letter page shows %d selectable rows of ui-dead-1 (%v)", n, err)
		}
		return nil
	})
	// Its detail lists its error.
	detail, err := pageJS[string](browser, `document.querySelector('`+row+` a.dead').click();
		new Promise(r => setTimeout(() => r(document.getElementById('dead-errors').textContent), 500))`)
	if err != nil || !strings.Contains(detail, "attempt 1") {
		t.Errorf("dead letter detail errors %q (%v), want attempt 1's", detail, err)
	}
	// Replay asks first; nothing is sent before the confirmation.
	confirm, err := pageJS[string](browser, `document.querySelector('`+row+` input.dead-pick').click();
		document.getElementById('dead-replay').click();
		document.getElementById('dead-confirm').hidden ? '' : document.getElementById('dead-confirm-text').textContent`)
	if err != nil || !strings.Contains(confirm, "ui-dead-1") {
		t.Fatalf("replay asked %q (%v), want a confirmation naming ui-dead-1", confirm, err)
	}
	if dead, _, err := cl.DeadLetters(ctx, 0, "", job.Id); err != nil || len(dead) != 1 {
		t.Fatalf("the dead letter went before the confirmation: %d, %v", len(dead), err)
	}
	if _, err := pageJS[bool](browser, `document.getElementById('dead-confirm-yes').click(); true`); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, func() error {
		st, err := pageJS[string](browser, `(document.querySelector('`+row+`') ? 'listed; ' : '') + document.getElementById('dead-message').textContent`)
		if err != nil || st != "replayed 1 of 1" {
			return fmt.Errorf("page: %q (%v), want the row gone and \"replayed 1 of 1\"", st, err)
		}
		return nil
	})
	testenv.Eventually(t, 30*time.Second, func() error {
		js, err := cl.Jobs(ctx, job.Id)
		if err != nil || len(js) != 1 || js[0].State != workerpb.JobResult_DONE {
			return fmt.Errorf("ui-dead-1 after replay: %v (%v), want done", js, err)
		}
		return nil
	})

	// The jobs page finds it by id: done, with the job it emitted.
	testenv.Eventually(t, 20*time.Second, func() error {
		type view struct {
			State   string   `json:"state"`
			Emitted []string `json:"emitted"`
		}
		v, err := pageJS[view](browser, `location.hash = '#jobs';
			document.getElementById('job-id').value = 'ui-dead-1';
			document.querySelector('#job-find button').click();
			new Promise(r => setTimeout(() => {
				const rows = Array.from(document.querySelectorAll('#job-fields tr'));
				const st = rows.find(tr => tr.firstChild.textContent === 'state');
				r({state: st ? st.lastChild.textContent : '', emitted: Array.from(document.querySelectorAll('#job-emitted a.job')).map(a => a.textContent)});
			}, 500))`)
		if err != nil || v.State != "done" || len(v.Emitted) != 1 || v.Emitted[0] != "ui-dead-1~0" {
			return fmt.Errorf("job page: %+v (%v), want done with emitted ui-dead-1~0", v, err)
		}
		return nil
	})
	// And lists it among the done jobs of its key.
	testenv.Eventually(t, 20*time.Second, func() error {
		ids, err := pageJS[[]string](browser, `document.getElementById('jobs-state').value = 'done';
			document.getElementById('jobs-key').value = 'ui-account';
			document.querySelector('#jobs-search button').click();
			new Promise(r => setTimeout(() => r(Array.from(document.querySelectorAll('#jobs-table tbody tr')).map(tr => tr.dataset.id || '')), 500))`)
		if err != nil || len(ids) != 1 || ids[0] != "ui-dead-1" {
			return fmt.Errorf("done jobs of ui-account on the page: %v (%v)", ids, err)
		}
		return nil
	})
	// Finished twice (dead, then done), it is listed once by the CLI too.
	out, err := c.coordinator("jobs", "list", "--state", "done", "--key", "ui-account")
	if err != nil || strings.Count(out, "ui-dead-1 ") != 1 {
		t.Errorf("jobs list --state done --key ui-account: %v\n%s", err, out)
	}
}

// pageJS evaluates expr in the page, waiting for the promise it may
// return, within 10 s.
func pageJS[T any](browser context.Context, expr string) (T, error) {
	ctx, cancel := context.WithTimeout(browser, 10*time.Second)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
}

// TestDashboardOverTLSActsForAdmins: with --metrics-tls the metrics
// address speaks mutual TLS with the cluster's certificates: any of them
// reads /metrics and the dashboard, only an admin one replays and purges,
// and a client without one is refused at the handshake.
func TestDashboardOverTLSActsForAdmins(t *testing.T) {
	c := newCluster(t, "--metrics", "127.0.0.1:0", "--metrics-tls", "--partitions", "8")
	c.start("w1")
	url := uiURL(t, c, "w1")
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("ui meta %s, want https", url)
	}
	base := strings.TrimSuffix(url, "/ui/")
	as := func(role pki.Role) *http.Client {
		return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: c.pki.ClientTLS(t, role)}}
	}
	do := func(cl *http.Client, method, path, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if method == http.MethodPost {
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-Corral-Action", "purge")
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	reader, admin := as(pki.RoleRead), as(pki.RoleAdmin)
	if code, body := do(reader, http.MethodGet, "/metrics", ""); code != 200 || !strings.Contains(body, "corral_partitions_owned") {
		t.Errorf("GET /metrics with a read certificate: %d", code)
	}
	if code, body := do(reader, http.MethodGet, "/ui/api/config", ""); code != 200 || !strings.Contains(body, `"actions":false`) {
		t.Errorf("a reader's dashboard config: %d %s", code, body)
	}
	if code, body := do(reader, http.MethodPost, "/ui/api/dead/purge", `{"ids":["nope"]}`); code != http.StatusForbidden || !strings.Contains(body, "not admin") {
		t.Errorf("a purge with a read certificate: %d %s, want 403", code, body)
	}
	if code, body := do(admin, http.MethodGet, "/ui/api/config", ""); code != 200 || !strings.Contains(body, `"actions":true`) {
		t.Errorf("an admin's dashboard config: %d %s", code, body)
	}
	if code, body := do(admin, http.MethodPost, "/ui/api/dead/purge", `{"ids":["nope"]}`); code != 200 || !strings.Contains(body, `"count":0`) {
		t.Errorf("a purge with an admin certificate: %d %s, want 200 and nothing purged", code, body)
	}
	// No certificate: the handshake fails.
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.pki.ClientTLS(t, pki.RoleRead).RootCAs}}}
	if resp, err := plain.Get(base + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("GET /metrics without a client certificate: %s, want a refused handshake", resp.Status)
	}
}
