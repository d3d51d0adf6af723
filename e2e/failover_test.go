package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/audit"
	"github.com/corralhq/corral/internal/lease"
	"github.com/corralhq/corral/internal/testenv"
)

// 10. Fast failover and its bound. A worker paused (SIGSTOP) for 500 ms
// is alive: its port still accepts, so no peer takes it for dead, and no
// partition changes owner more than once. A worker killed (SIGKILL)
// refuses connections at once: a peer ends its lease on that evidence,
// and its partitions move under new epochs without waiting for the lease
// to expire. Every job is applied exactly once throughout. The test
// checks who took what and how often, never how fast (make
// bench-failover times it).
func TestFaultFastFailover(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	settle(c, l, "w1", "w2", "w3")

	pauses := 1
	if faultsLong {
		pauses = 3
	}
	for round := 1; round <= pauses; round++ {
		before := c.epochs()
		c.signal("w1", syscall.SIGSTOP)
		time.Sleep(500 * time.Millisecond) // the length of the pause
		c.signal("w1", syscall.SIGCONT)
		settle(c, l, "w1", "w2", "w3")
		moves, flapped := 0, []string{}
		for p, e := range c.epochs() {
			switch d := e - before[p]; {
			case d > 1:
				flapped = append(flapped, fmt.Sprintf("p%d: %d grants", p, d))
				moves++
			case d == 1:
				moves++
			}
		}
		t.Logf("round %d: w1 paused for 500ms: %d partitions changed owner", round, moves)
		if len(flapped) > 0 {
			t.Errorf("round %d: partitions changed owner more than once after one pause: %s", round, strings.Join(flapped, ", "))
		}
	}
	for _, id := range []string{"w2", "w3"} {
		if b := burialsOf(c.workerLog(id), "w1"); b != "" {
			t.Errorf("%s took the paused w1 for dead:\n%s", id, b)
		}
	}

	hs := settle(c, l, "w1", "w2", "w3")
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	c.signal("w2", syscall.SIGKILL)
	l.probe(moved)
	after := c.waitBalanced("w1", "w3")
	for p, e := range moved {
		if after[p].Epoch <= e {
			t.Errorf("partition %d, held by the killed w2 under epoch %d, is now held under epoch %d: not a new grant", p, e, after[p].Epoch)
		}
	}
	buried := burialsOf(c.workerLog("w1")+c.workerLog("w3"), "w2")
	if buried == "" {
		t.Errorf("no peer ended the killed w2's lease on its refused port; its partitions waited for the lease to expire")
	}
	t.Logf("evidence of w2's death:\n%s", buried)
	l.waitMore(t, faultRate) // a second of load after the takeover, on a quick machine
	verify(t, c, "SIGSTOP 500ms, then SIGKILL", l, fault, moved, start)
}

// 11. False evidence of death: a live worker's lease is buried as if its
// port had refused (a port closed by a process that lives on, a forged
// reset). Its partitions move away and it takes a share again when it
// rejoins the layout, each partition changing owner at most twice; its
// stale commits are fenced; a second burial of the same lease is refused,
// so the same lie cannot make the partitions flap; every job is applied
// exactly once.
func TestFaultFalseDeath(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	threeWorkers(c)
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	var token string
	for _, h := range hs {
		if lease.WorkerID(h.Token) == "w1" {
			token = h.Token
		}
	}
	ctx := context.Background()
	rdb := c.redis.Client(t)
	before := c.epochs()
	fault, moved := time.Now(), audit.HeldBy(hs, "w1")
	if ok, err := lease.Bury(ctx, rdb, token); err != nil || !ok {
		t.Fatalf("bury w1's live lease %s: %v %v", token, ok, err)
	}
	l.probe(moved)
	// w1 takes its lease again and joins the layout again.
	testenv.Eventually(t, 30*time.Second, func() error {
		if alive, err := lease.Alive(ctx, rdb, token); err != nil || !alive {
			return fmt.Errorf("w1's lease not taken again: %v %v", alive, err)
		}
		return nil
	})
	c.waitBalanced("w1", "w2", "w3")
	l.waitMore(t, faultRate)
	once := c.epochs()
	moves := 0
	for p, e := range once {
		if d := e - before[p]; d > 2 {
			t.Errorf("partition %d: %d grants after one false death, want at most 2 (away from w1, to w1 when it joins again)", p, d)
		} else if d > 0 {
			moves++
		}
	}
	t.Logf("one false death of w1: %d partitions changed owner", moves)
	if ok, err := lease.Bury(ctx, rdb, token); err != nil || ok {
		t.Fatalf("second burial of w1's lease: %v %v, want refused (buried once already)", ok, err)
	}
	l.waitMore(t, faultRate)
	c.waitBalanced("w1", "w2", "w3")
	for p, e := range c.epochs() {
		if e != once[p] {
			t.Errorf("partition %d changed owner after a refused second burial (epoch %d → %d)", p, once[p], e)
		}
	}
	l.waitMore(t, faultRate) // a second of load, on a quick machine
	verify(t, c, "false death", l, fault, moved, start)
}

// 12. A worker cut off from its peers is not dead: each worker is
// advertised through a proxy, and w2's is cut, its connections reset
// midway (the watch connections end), and healed. Dials to w2 hang, they
// are not refused: nobody buries w2, no partition changes owner more than
// once, and every job is applied exactly once.
func TestFaultPeerCutIsNotDeath(t *testing.T) {
	c := faultCluster(t, testenv.RedisOptions{})
	peers := map[string]*testenv.Proxy{}
	for _, id := range []string{"w1", "w2", "w3"} {
		peers[id] = c.startAdvertised(id)
	}
	start := c.waitBalanced("w1", "w2", "w3")
	l := startLoad(t, c, loadSize())
	hs := settle(c, l, "w1", "w2", "w3")
	before := c.epochs()
	fault, moved := time.Now(), audit.HeldBy(hs, "w2")
	peers["w2"].Cut()
	time.Sleep(2 * time.Second) // half the length of the cut
	peers["w2"].Reset()
	time.Sleep(2 * time.Second) // the other half
	peers["w2"].Heal()
	c.waitBalanced("w1", "w2", "w3")
	l.waitMore(t, faultRate) // a second of load, on a quick machine
	moves := 0
	for p, e := range c.epochs() {
		if d := e - before[p]; d > 1 {
			t.Errorf("partition %d: %d grants after one peer cut, want at most 1", p, d)
		} else if d == 1 {
			moves++
		}
	}
	t.Logf("w2 cut off from its peers for 4s: %d partitions changed owner", moves)
	for _, id := range []string{"w1", "w3"} {
		if b := burialsOf(c.workerLog(id), "w2"); b != "" {
			t.Errorf("%s took w2, cut off but alive, for dead:\n%s", id, b)
		}
	}
	verify(t, c, "peer cut, not death", l, fault, moved, start)
}

// burialsOf returns the lines of a worker's log where it ended peer's
// lease on the evidence of its refused port.
func burialsOf(log, peer string) string {
	named := regexp.MustCompile(`peer=` + regexp.QuoteMeta(peer) + `(\s|$)`)
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "refuses connections") && named.MatchString(line) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
