package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/examples/donations/workload"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/sharding"
)

// TestDashboardInBrowser opens a worker's dashboard in headless Chromium:
// the partition map shows every partition with the owner Locate names, a
// SIGKILLed worker's cells go to the others within seconds, and the
// throughput plot rises while donations are submitted.
func TestDashboardInBrowser(t *testing.T) {
	c := newCluster(t, "--metrics", "127.0.0.1:0")
	for _, id := range []string{"w1", "w2", "w3"} {
		c.start(id)
	}
	url := uiURL(t, c, "w1")
	t.Logf("dashboard of w1 at %s", url)
	browser := newBrowser(t)

	if err := chromedp.Do(browser, chromedp.Navigate(url+"#cluster")); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	cl := c.client()
	keys := keyPerPartition(64)
	var owners []string
	testenv.Eventually(t, 30*time.Second, func() error {
		owners = pageOwners(t, browser)
		if len(owners) != 64 {
			return fmt.Errorf("the map shows %d cells, want 64", len(owners))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		locs, err := cl.Locate(ctx, keys...)
		if err != nil {
			return err
		}
		for p, loc := range locs {
			if int(loc.Partition) != p || owners[p] != loc.Owner {
				return fmt.Errorf("partition %d: the page shows %q, Locate says %q (partition %d)", p, owners[p], loc.Owner, loc.Partition)
			}
		}
		if n := len(distinct(owners)); n != 3 {
			return fmt.Errorf("the map shows %d owners %v, want the 3 workers", n, distinct(owners))
		}
		return nil
	})
	// Each owner has a color of its own, the same on each of its cells.
	colors, err := chromedp.Run(browser, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#map .cell')).map(c => c.dataset.owner + '=' + c.style.background)`))
	if err != nil {
		t.Fatal(err)
	}
	colorOf, ownerOf := map[string]string{}, map[string]string{}
	for _, oc := range colors {
		o, col, _ := strings.Cut(oc, "=")
		if prev, ok := colorOf[o]; ok && prev != col {
			t.Errorf("owner %s drawn in %s and %s", o, prev, col)
		}
		if prev, ok := ownerOf[col]; ok && prev != o {
			t.Errorf("owners %s and %s drawn in the same color %s", prev, o, col)
		}
		colorOf[o], ownerOf[col] = col, o
	}
	// ... and one that an eye tells apart from the others'.
	for a, ca := range colorOf {
		for b, cb := range colorOf {
			if a < b {
				if d := rgbDistance(t, ca, cb); d < 80 {
					t.Errorf("owners %s (%s) and %s (%s) are drawn in colors %.0f apart in RGB, too close to tell", a, ca, b, cb, d)
				}
			}
		}
	}
	if members, err := chromedp.Run(browser, chromedp.Evaluate[int](`document.querySelectorAll('#members tbody tr').length`)); err != nil || members != 3 {
		t.Errorf("members table has %d rows (err %v), want 3", members, err)
	}
	// With TLS on, the page cannot tell an admin: replay and purge are off,
	// and the worker refuses them.
	if off, err := chromedp.Run(browser, chromedp.Evaluate[bool](`fetch('api/config').then(r => r.json()).then(c => !c.actions && c.actions_off.includes('admin'))`, chromedp.EvalAwaitPromise)); err != nil || !off {
		t.Errorf("a TLS cluster's dashboard offers replay and purge (err %v)", err)
	}
	if code, err := chromedp.Run(browser, chromedp.Evaluate[int](`fetch('api/dead/purge', {method: 'POST', headers: {'Content-Type': 'application/json', 'X-Corral-Action': 'purge'}, body: '{"ids":["x"]}'}).then(r => r.status)`, chromedp.EvalAwaitPromise)); err != nil || code != 403 {
		t.Errorf("a purge on a TLS cluster's dashboard answered %d (err %v), want 403", code, err)
	}

	// The throughput plot rises while donations are submitted.
	if _, err := chromedp.Run(browser, chromedp.Evaluate[string](`location.hash = '#throughput'`)); err != nil {
		t.Fatal(err)
	}
	jobs, exp := workload.Generate(workload.Spec{Seed: 11, Donations: 3000, Donors: 200, Campaigns: 10})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < len(jobs); i += 100 {
			submitWithRetry(ctx, t, cl, jobs[i:min(i+100, len(jobs))])
			time.Sleep(50 * time.Millisecond) // spread over a few seconds of samples
		}
	}()
	testenv.Eventually(t, 60*time.Second, func() error {
		type plot struct {
			Committed float64 `json:"committed"`
			Points    int     `json:"points"`
			Above     bool    `json:"above"`
		}
		peak, err := chromedp.Run(browser, chromedp.Evaluate[plot](`(() => {
			const s = window.corral.samples || [];
			const pts = document.getElementById('line-committed').getAttribute('points').trim().split(/\s+/).filter(Boolean);
			return {committed: Math.max(0, ...s.map(x => x.committed)), points: pts.length,
				above: pts.some(p => parseFloat(p.split(',')[1]) < 239)};
		})()`))
		if err != nil {
			return err
		}
		if peak.Committed <= 0 || peak.Points < 2 || !peak.Above {
			return fmt.Errorf("plot: peak %.0f committed/s, %d points, a point above the axis %v", peak.Committed, peak.Points, peak.Above)
		}
		t.Logf("plot: peak %.0f committed jobs/s over %d points", peak.Committed, peak.Points)
		return nil
	})
	wg.Wait()
	if rep, err := workload.WaitFor(ctx, cl, exp); err != nil || !rep.OK() {
		t.Fatalf("totals: %s err %v", rep, err)
	}

	// A SIGKILLed worker's cells change owner on the page.
	if _, err := chromedp.Run(browser, chromedp.Evaluate[string](`location.hash = '#cluster'`)); err != nil {
		t.Fatal(err)
	}
	owners = pageOwners(t, browser)
	var had []int
	for p, o := range owners {
		if o == "w3" {
			had = append(had, p)
		}
	}
	if len(had) == 0 {
		t.Fatalf("w3 owns no cell on the page: %v", owners)
	}
	killed := time.Now()
	c.signal("w3", syscall.SIGKILL)
	testenv.Eventually(t, 20*time.Second, func() error {
		owners = pageOwners(t, browser)
		for _, p := range had {
			if owners[p] == "w3" || owners[p] == "" {
				return fmt.Errorf("partition %d still shows %q after SIGKILL of w3", p, owners[p])
			}
		}
		return nil
	})
	t.Logf("the page moved w3's %d cells to %v %.1fs after SIGKILL", len(had), distinct(owners), time.Since(killed).Seconds())
	// ... and its recent events say so, in words.
	testenv.Eventually(t, 20*time.Second, func() error {
		moved, err := chromedp.Run(browser, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#events li[data-kind="partition.moved"]')).map(li => li.textContent)`))
		if err != nil {
			return err
		}
		for _, m := range moved {
			if strings.Contains(m, "from w3 to ") {
				t.Logf("event on the page: %s", m)
				return nil
			}
		}
		return fmt.Errorf("no event of a partition moved from w3 among %q", moved)
	})
}

// uiURL reads worker id's dashboard URL from its Consul service meta.
func uiURL(t *testing.T, c *cluster, id string) string {
	t.Helper()
	entries, _, err := c.consul.Client(t).Health().Service(discovery.DefaultService, "", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Service.ID == id || strings.HasSuffix(e.Service.ID, id) {
			if u := e.Service.Meta["ui"]; (strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://")) && strings.HasSuffix(u, "/ui/") {
				return u
			}
			t.Fatalf("service %s meta %v: no ui URL", e.Service.ID, e.Service.Meta)
		}
	}
	t.Fatalf("no healthy service for %s among %d", id, len(entries))
	return ""
}

// newBrowser starts headless Chromium for the test. On failure it saves a
// screenshot and the page's HTML in the test's state folder
// (failureDir) and says where.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Fatal("no Chromium found: install it (apt-get install -y chromium, or make deps) or set CORRAL_CHROMIUM to its path")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.Flag("headless", true), chromedp.DisableGPU, chromedp.WindowSize(1280, 1000),
		chromedp.Flag("disable-dev-shm-usage", true))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir := failureDir(t)
		sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
		defer scancel()
		if html, err := chromedp.Run(sctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`)); err == nil {
			_ = os.WriteFile(filepath.Join(dir, "page.html"), []byte(html), 0o644)
		}
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		file := filepath.Join(dir, "page.png")
		if err := os.WriteFile(file, png, 0o644); err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		t.Logf("screenshot of the page at failure: %s (and page.html beside it)", file)
	})
	return ctx
}

// failureDir is the test's state folder for what a failure leaves to look
// at: $CORRAL_E2E_ARTIFACTS/TEST, else corral-e2e-state/TEST in the
// system's temporary folder. Unlike t.TempDir it outlives the test.
func failureDir(t *testing.T) string {
	root := os.Getenv("CORRAL_E2E_ARTIFACTS")
	if root == "" {
		root = filepath.Join(os.TempDir(), "corral-e2e-state")
	}
	dir := filepath.Join(root, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Logf("no state folder %s: %v", dir, err)
	}
	return dir
}

func chromiumPath() string {
	if p := os.Getenv("CORRAL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// rgbDistance is the Euclidean distance of two CSS colors "rgb(r, g, b)".
func rgbDistance(t *testing.T, a, b string) float64 {
	t.Helper()
	var x, y [3]float64
	if _, err := fmt.Sscanf(a, "rgb(%f, %f, %f)", &x[0], &x[1], &x[2]); err != nil {
		t.Fatalf("color %q: %v", a, err)
	}
	if _, err := fmt.Sscanf(b, "rgb(%f, %f, %f)", &y[0], &y[1], &y[2]); err != nil {
		t.Fatalf("color %q: %v", b, err)
	}
	return math.Sqrt((x[0]-y[0])*(x[0]-y[0]) + (x[1]-y[1])*(x[1]-y[1]) + (x[2]-y[2])*(x[2]-y[2]))
}

// pageOwners reads the owner of each cell of the partition map.
func pageOwners(t *testing.T, browser context.Context) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(browser, 5*time.Second)
	defer cancel()
	owners, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#map .cell')).map(c => c.dataset.owner || '')`))
	if err != nil {
		t.Fatalf("read the partition map: %v", err)
	}
	return owners
}

// keyPerPartition finds one key of each of n partitions, in partition order.
func keyPerPartition(n int) []string {
	keys := make([]string, n)
	found := 0
	for i := 0; found < n; i++ {
		k := fmt.Sprintf("donor:%d", i)
		if p := sharding.PartitionOf(k, n); keys[p] == "" {
			keys[p] = k
			found++
		}
	}
	return keys
}

func distinct(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}
