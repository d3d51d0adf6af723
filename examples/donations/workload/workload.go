// Package workload generates a reproducible set of donations with the
// totals they must produce, and checks a cluster's committed state against
// those totals.
package workload

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/examples/donations/ledger"
)

// Spec says what to generate.
type Spec struct {
	Seed      uint64
	Donations int
	Donors    int
	Campaigns int
}

// Expected is what the ledger must show once every donation committed.
type Expected struct {
	Donors    map[string]ledger.DonorState    `json:"donors"`
	Campaigns map[string]ledger.CampaignState `json:"campaigns"`
}

// Generate returns the donation jobs (ids derived from the seed, so a rerun
// of the same spec is deduplicated) and the totals they must produce.
func Generate(s Spec) ([]*workerpb.Job, Expected) {
	r := rand.New(rand.NewPCG(s.Seed, s.Seed^0x5eed))
	exp := Expected{Donors: map[string]ledger.DonorState{}, Campaigns: map[string]ledger.CampaignState{}}
	jobs := make([]*workerpb.Job, s.Donations)
	for i := range jobs {
		donor := fmt.Sprintf("donor-%05d", r.IntN(s.Donors))
		campaign := fmt.Sprintf("campaign-%03d", r.IntN(s.Campaigns))
		amount := int64(1 + r.IntN(50000))
		payload, _ := json.Marshal(ledger.Donation{AmountCents: amount, Campaign: campaign})
		jobs[i] = &workerpb.Job{Id: fmt.Sprintf("don-%d-%d", s.Seed, i), Handler: "donor.donate", Key: donor, Payload: payload}
		d := exp.Donors[donor]
		d.TotalCents += amount
		d.Count++
		d.ZakatCents = ledger.Zakat(d.TotalCents)
		exp.Donors[donor] = d
		c := exp.Campaigns[campaign]
		c.TotalCents += amount
		c.Count++
		exp.Campaigns[campaign] = c
	}
	return jobs, exp
}

// StateReader reads committed states; *client.Client is one.
type StateReader interface {
	State(ctx context.Context, entity string, keys ...string) ([]*workerpb.EntityState, error)
}

// Report is the outcome of a verification.
type Report struct {
	Donors, Campaigns int      // entities checked
	Mismatches        []string // one line per entity that differs
	Lost, Duplicated  int64    // donations missing / counted more than once, from the counts
}

// OK reports whether every total matched.
func (r Report) OK() bool { return len(r.Mismatches) == 0 }

func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "checked %d donors and %d campaigns: %d mismatches, lost %d, duplicated %d",
		r.Donors, r.Campaigns, len(r.Mismatches), r.Lost, r.Duplicated)
	for i, m := range r.Mismatches {
		if i == 10 {
			fmt.Fprintf(&b, "\n  ... and %d more", len(r.Mismatches)-10)
			break
		}
		b.WriteString("\n  " + m)
	}
	return b.String()
}

// Verify compares the cluster's committed state with exp.
func Verify(ctx context.Context, c StateReader, exp Expected) (Report, error) {
	var rep Report
	donors := sortedKeys(exp.Donors)
	if err := eachState(ctx, c, "donor", donors, func(key string, found bool, raw []byte) error {
		want := exp.Donors[key]
		var got ledger.DonorState
		if found {
			if err := json.Unmarshal(raw, &got); err != nil {
				return fmt.Errorf("donor %s: bad state %q: %w", key, raw, err)
			}
		}
		rep.Donors++
		if got != want {
			rep.Mismatches = append(rep.Mismatches, fmt.Sprintf("donor %s: got %+v, want %+v", key, got, want))
		}
		rep.count(got.Count, want.Count)
		return nil
	}); err != nil {
		return rep, err
	}
	campaigns := sortedKeys(exp.Campaigns)
	err := eachState(ctx, c, "campaign", campaigns, func(key string, found bool, raw []byte) error {
		want := exp.Campaigns[key]
		var got ledger.CampaignState
		if found {
			if err := json.Unmarshal(raw, &got); err != nil {
				return fmt.Errorf("campaign %s: bad state %q: %w", key, raw, err)
			}
		}
		rep.Campaigns++
		if got != want {
			rep.Mismatches = append(rep.Mismatches, fmt.Sprintf("campaign %s: got %+v, want %+v", key, got, want))
		}
		return nil
	})
	return rep, err
}

func (r *Report) count(got, want int64) {
	if got < want {
		r.Lost += want - got
	} else {
		r.Duplicated += got - want
	}
}

func eachState(ctx context.Context, c StateReader, entity string, keys []string, f func(key string, found bool, raw []byte) error) error {
	const chunk = 1000
	for i := 0; i < len(keys); i += chunk {
		part := keys[i:min(i+chunk, len(keys))]
		states, err := c.State(ctx, entity, part...)
		if err != nil {
			return fmt.Errorf("read %s states: %w", entity, err)
		}
		for _, s := range states {
			if err := f(s.Key, s.Found, s.State); err != nil {
				return err
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WaitFor verifies until the totals match or ctx ends, and returns the last
// report. Jobs still in flight show as "lost" until they commit, so only
// the report at the deadline is final.
func WaitFor(ctx context.Context, c StateReader, exp Expected) (Report, error) {
	for {
		rep, err := Verify(ctx, c, exp)
		if err == nil && (rep.OK() || rep.Duplicated > 0) {
			return rep, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return rep, err
			}
			return rep, nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}
