package ledger

import (
	"errors"
	"fmt"
)

// Handler names served by the donations plugin. The part before the dot is
// the entity type whose state the handler owns.
const (
	HandlerDonate = "donor.donate"    // key: donor id, payload: Donation
	HandlerCredit = "campaign.credit" // key: campaign id, payload: Credit
	// HandlerReport is read-only: it answers with the donor's state and a
	// campaign's totals, read through the host (key: donor id, payload:
	// ReportQuery, result: Report). Meant for Call.
	HandlerReport = "donor.report"
)

// ReportQuery is the payload of a donor.report job.
type ReportQuery struct {
	Campaign string `json:"campaign"`
}

// Report is the result of a donor.report job.
type Report struct {
	Donor    DonorState    `json:"donor"`
	Campaign CampaignState `json:"campaign"`
}

// Sentinels a caller can branch on; Validate wraps them with the offending
// value.
var (
	ErrNonPositiveAmount = errors.New("donation amount must be positive")
	ErrNoCampaign        = errors.New("donation campaign must not be empty")
)

// Donation is the payload of a donor.donate job.
type Donation struct {
	AmountCents int64  `json:"amount_cents"`
	Campaign    string `json:"campaign"`
}

// Validate reports why a donation cannot be applied, if it cannot.
func (d Donation) Validate() error {
	if d.AmountCents <= 0 {
		return fmt.Errorf("%w, got %d cents", ErrNonPositiveAmount, d.AmountCents)
	}
	if d.Campaign == "" {
		return ErrNoCampaign
	}
	return nil
}

// Credit is the payload of a campaign.credit job, emitted once per applied
// donation.
type Credit struct {
	AmountCents int64  `json:"amount_cents"`
	Donor       string `json:"donor"`
}

// DonorState is the state of a donor entity.
type DonorState struct {
	TotalCents int64 `json:"total_cents"`
	Count      int64 `json:"count"`
	ZakatCents int64 `json:"zakat_cents"`
}

// Apply returns the state after donation d. Zakat is recomputed from the new
// total rather than accumulated per donation, so rounding never drifts.
func (s DonorState) Apply(d Donation) DonorState {
	s.TotalCents += d.AmountCents
	s.Count++
	s.ZakatCents = Zakat(s.TotalCents)
	return s
}

// CampaignState is the state of a campaign entity.
type CampaignState struct {
	TotalCents int64 `json:"total_cents"`
	Count      int64 `json:"count"`
}

// Apply returns the state after credit c.
func (s CampaignState) Apply(c Credit) CampaignState {
	s.TotalCents += c.AmountCents
	s.Count++
	return s
}

// Zakat is 2.5% of totalCents, rounded down to a whole cent. Integer
// arithmetic keeps every worker's result identical.
func Zakat(totalCents int64) int64 {
	return totalCents * 25 / 1000
}
