// Command donations-plugin is the donations example's handler plugin. The
// worker launches it (--plugin path/to/donations-plugin); run by hand it
// only says that it is a plugin.
//
// donor.donate (key: donor) adds a donation to the donor's totals and
// credits the campaign with an emitted campaign.credit job (key: campaign),
// so the campaign's partition applies it exactly once. campaign.credit is
// internal: the worker refuses it from Submit and Call.
package main

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/corralhq/corral/examples/donations/ledger"
	"github.com/corralhq/corral/plugins/sdk"
)

// version is what `coordinator status` shows; a release build may set it
// with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	// The job path allocates per batch and keeps little: at Go's default
	// GOGC of 100 the collector took about a fifth of this process's CPU
	// under load. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	newPlugin().Serve()
}

func newPlugin() *sdk.Plugin {
	limits := []sdk.Option{sdk.Timeout(5 * time.Second), sdk.MaxAttempts(5)}
	return sdk.New("donations", version,
		// The worker refuses a donation without these fields at submit.
		sdk.Handler(ledger.HandlerDonate, donate, append(limits, sdk.ShapeOf[ledger.Donation]())...),
		// Only donor.donate emits credits: one submitted from outside
		// would credit a campaign without a donation.
		sdk.Handler(ledger.HandlerCredit, credit, append(limits, sdk.ShapeOf[ledger.Credit](), sdk.Internal())...),
		sdk.Handler(ledger.HandlerReport, report, append(limits, sdk.ShapeOf[ledger.ReportQuery]())...),
	)
}

// report answers with the donor's state and a campaign's totals. The
// campaign lives in another partition, so it is read through the host's
// query service; nothing is written.
func report(c *sdk.Call) error {
	var q ledger.ReportQuery
	if err := c.Decode(&q); err != nil {
		return err
	}
	var r ledger.Report
	if _, err := c.Load(&r.Donor); err != nil {
		return err
	}
	if _, err := c.Query("campaign", q.Campaign, &r.Campaign); err != nil {
		return err
	}
	return c.SetResult(r)
}

func donate(c *sdk.Call) error {
	var d ledger.Donation
	if err := c.Decode(&d); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return sdk.Fail(err) // bad input never becomes good: dead-letter it
	}
	var s ledger.DonorState
	if _, err := c.Load(&s); err != nil {
		return err
	}
	s = s.Apply(d)
	if err := c.Save(s); err != nil {
		return err
	}
	if err := c.Emit(ledger.HandlerCredit, d.Campaign, ledger.Credit{AmountCents: d.AmountCents, Donor: c.Key()}); err != nil {
		return err
	}
	return c.SetResult(s)
}

func credit(c *sdk.Call) error {
	var cr ledger.Credit
	if err := c.Decode(&cr); err != nil {
		return err
	}
	if cr.AmountCents <= 0 {
		return sdk.Failf("credit amount must be positive, got %d cents", cr.AmountCents)
	}
	var s ledger.CampaignState
	if _, err := c.Load(&s); err != nil {
		return err
	}
	return c.Save(s.Apply(cr))
}
