package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/pki"
	"github.com/corralhq/corral/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// inventoryPlugin builds the declarations test plugin next to the other
// binaries.
func inventoryPlugin(t *testing.T, c *cluster) string {
	t.Helper()
	path := filepath.Join(c.bins, "inventory-plugin")
	if _, err := os.Stat(path); err == nil {
		return path
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", path, "./e2e/testdata/inventory")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build inventory plugin: %v\n%s", err, out)
	}
	return path
}

// refused runs the coordinator, wants it to fail, and returns what it
// said on stderr.
func (c *cluster) refused(args ...string) string {
	c.t.Helper()
	out, err := c.coordinator(args...)
	if err == nil {
		c.t.Fatalf("coordinator %s succeeded: %q", strings.Join(args, " "), out)
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": exit status 1: "); i >= 0 {
		msg = msg[i+len(": exit status 1: "):]
	}
	return strings.TrimPrefix(msg, "coordinator: ")
}

// TestHandlerDeclarations: what a handler declares holds in a cluster.
// stock.* declare the entity inventory, which `state` reads, and `state`
// of an undeclared entity names the known ones; payloads the typed decoder
// cannot take are refused at submit; a reservation over the stock is
// rejected with its reason, commits nothing, stays out of the dead-letter
// store and gives the same answer to the same id; the internal
// order.reserved is refused from outside and runs when emitted.
func TestHandlerDeclarations(t *testing.T) {
	c := newCluster(t, "--partitions", "8")
	c.startWith("w1", inventoryPlugin(t, c))
	cl := c.client()
	waitOwners(t, cl, 1)

	t.Run("entity", func(t *testing.T) {
		if out, err := c.coordinator("submit", "--handler", "stock.add", "--key", "sku-1", "--id", "add-1",
			"--payload", `{"qty":3}`, "--wait"); err != nil || strings.TrimSpace(out) != `{"on_hand":3,"reserved":0}` {
			t.Fatalf("stock.add: %q %v", out, err)
		}
		if out, err := c.coordinator("state", "inventory", "sku-1"); err != nil || strings.TrimSpace(out) != `{"on_hand":3,"reserved":0}` {
			t.Fatalf("state inventory sku-1: %q %v", out, err)
		}
		msg := c.refused("state", "stock", "sku-1")
		if !strings.Contains(msg, `unknown entity "stock" (this cluster's entities: inventory, order)`) {
			t.Fatalf("state stock sku-1: %q, want the known entities named", msg)
		}
		t.Logf("state stock sku-1 -> %s", msg)
	})

	t.Run("shape", func(t *testing.T) {
		for payload, want := range map[string]string{
			`{"qty":1e3}`:                  `field "qty" is 1e3, a number with a fraction or an exponent; want integer`,
			`{"qty":99999999999999999999}`: `field "qty" is 99999999999999999999, a number outside the int64 range; want integer`,
			`{"qty":1,"qtty":2}`:           `field "qtty" is not one the handler takes (it takes: qty)`,
		} {
			msg := c.refused("submit", "--handler", "stock.add", "--key", "sku-1", "--payload", payload)
			if !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
				t.Errorf("payload %s: %q, want one line saying %q", payload, msg, want)
			}
			t.Logf("%-30s -> %s", payload, msg)
		}
		msg := c.refused("call", "--handler", "stock.reserve", "--key", "sku-1", "--payload", `{"qty":1,"order":"o-9","nte":"x"}`)
		if !strings.Contains(msg, `field "nte" is not one the handler takes (it takes: note, order, qty)`) {
			t.Errorf("call with a misspelled optional field: %q", msg)
		}
	})

	t.Run("reject", func(t *testing.T) {
		const want = "job r-1 was rejected: out of stock: 3 left"
		for i := range 2 { // the same id again gets the same answer
			msg := c.refused("call", "--handler", "stock.reserve", "--key", "sku-1", "--id", "r-1", "--payload", `{"qty":5,"order":"o-1"}`)
			if msg != want {
				t.Fatalf("call %d of r-1: %q, want %q", i+1, msg, want)
			}
		}
		if msg := c.refused("result", "r-1"); msg != want {
			t.Errorf("result r-1: %q, want %q", msg, want)
		}
		// submit --wait says first where the job went, then its answer.
		msg := c.refused("submit", "--handler", "stock.reserve", "--key", "sku-1", "--id", "r-2", "--payload", `{"qty":4,"order":"o-2"}`, "--wait")
		if !strings.HasPrefix(msg, "r-2 partition=") || !strings.HasSuffix(msg, "\ncoordinator: job r-2 was rejected: out of stock: 3 left") {
			t.Errorf("submit --wait r-2: %q", msg)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rs, err := cl.Results(ctx, 0, "r-1", "r-2")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.State != workerpb.JobResult_REJECTED || r.Error != "out of stock: 3 left" || r.Attempts != 1 || len(r.Result) > 0 {
				t.Errorf("result of %s: %v, want REJECTED after 1 attempt with the reason", r.Id, r)
			}
		}
		if out, err := c.coordinator("dlq", "list"); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("dlq list: %q %v, want no dead letter", out, err)
		}
		if out, err := c.coordinator("state", "inventory", "sku-1"); err != nil || strings.TrimSpace(out) != `{"on_hand":3,"reserved":0}` {
			t.Errorf("state after the rejections: %q %v, want it untouched", out, err)
		}
		if out, err := c.coordinator("call", "--handler", "stock.reserve", "--key", "sku-1", "--id", "r-3",
			"--payload", `{"qty":2,"order":"o-1"}`); err != nil || strings.TrimSpace(out) != `{"on_hand":1,"reserved":2}` {
			t.Fatalf("a reservation within the stock: %q %v", out, err)
		}
	})

	t.Run("internal", func(t *testing.T) {
		const want = "handler order.reserved is internal: only other handlers may emit it"
		if msg := c.refused("submit", "--handler", "order.reserved", "--key", "o-1", "--payload", `{"sku":"sku-1","qty":1}`); msg != want {
			t.Errorf("submit: %q, want %q", msg, want)
		}
		if msg := c.refused("call", "--handler", "order.reserved", "--key", "o-1", "--payload", `{"sku":"sku-1","qty":1}`); msg != want {
			t.Errorf("call: %q, want %q", msg, want)
		}
		// r-3 emitted order.reserved for o-1: it runs.
		testenv.Eventually(t, 20*time.Second, func() error {
			out, err := c.coordinator("state", "order", "o-1")
			if err != nil || strings.TrimSpace(out) != `{"lines":1,"qty":2}` {
				return fmt.Errorf("the emitted order.reserved did not commit: state order o-1 = %q %v", out, err)
			}
			return nil
		})
	})
}

// TestDeclarationsAcrossPluginSets: w1 serves the inventory plugin, w2
// only the donations plugin, as during a rolling upgrade. w2 learns what
// w1's handlers declare from the set w1 publishes: it refuses the internal
// order.reserved even for a key w1 owns, leaves it out of the handlers it
// lists, and serves state of w1's declared entity inventory, refusing an
// entity no worker's handler works on with all of them named.
func TestDeclarationsAcrossPluginSets(t *testing.T) {
	c := newCluster(t, "--partitions", "16")
	c.launch("w1", workerRun{plugin: inventoryPlugin(t, c)})
	c.launch("w2", workerRun{})
	cl := c.client()
	waitOwners(t, cl, 2)
	w2 := c.dialWorker(addrsOf(t, cl)["w2"])
	onW1 := keyOwnedBy(t, cl, "w1", "o")

	const internal = "handler order.reserved is internal: only other handlers may emit it"
	testenv.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := w2.Submit(ctx, &workerpb.SubmitRequest{Jobs: []*workerpb.Job{
			{Id: "x-1", Handler: "order.reserved", Key: onW1, Payload: []byte(`{"sku":"sku-1","qty":1}`)}}})
		cancel()
		if err != nil || resp.Results[0].Error != internal {
			return fmt.Errorf("w2's Submit of order.reserved for a key of w1: %v %v, want %q", resp, err, internal)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w2.Call(ctx, &workerpb.CallRequest{Job: &workerpb.Job{Handler: "order.reserved", Key: onW1,
		Payload: []byte(`{"sku":"sku-1","qty":1}`)}, TimeoutMs: 5000}); status.Convert(err).Message() != internal {
		t.Errorf("w2's Call of order.reserved: %v, want %q", err, internal)
	}
	resp, err := w2.Submit(ctx, &workerpb.SubmitRequest{Jobs: []*workerpb.Job{{Id: "x-2", Handler: "order.reserve", Key: onW1}}})
	if err != nil || !strings.Contains(resp.Results[0].Error, "(this cluster serves: donor.donate, donor.report, stock.add, stock.reserve)") {
		t.Errorf("w2's Submit of an unknown handler: %v %v, want the internal ones left out", resp, err)
	}
	if _, err := w2.GetState(ctx, &workerpb.GetStateRequest{Entity: "inventory", Keys: []string{"sku-1"}}); err != nil {
		t.Errorf("state of inventory on w2: %v", err)
	}
	_, err = w2.GetState(ctx, &workerpb.GetStateRequest{Entity: "stock", Keys: []string{"sku-1"}})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "(this cluster's entities: campaign, donor, inventory, order)") {
		t.Errorf("state of stock on w2: %v, want NotFound naming every worker's entities", err)
	}
}

// dialWorker connects to one worker of c, with an admin certificate when
// the workers serve TLS.
func (c *cluster) dialWorker(addr string) workerpb.WorkerClient {
	c.t.Helper()
	creds := insecure.NewCredentials()
	if c.pki != nil {
		creds = credentials.NewTLS(c.pki.ClientTLS(c.t, pki.RoleAdmin))
	}
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { conn.Close() })
	return workerpb.NewWorkerClient(conn)
}
