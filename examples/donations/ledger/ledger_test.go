package ledger

import (
	"errors"
	"testing"
)

func TestZakat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		total, want int64
	}{
		{0, 0},
		{1, 0},
		{39, 0}, // 0.975 rounds down
		{40, 1}, // exactly one cent
		{79, 1}, // 1.975 rounds down
		{10000, 250},
		{10039, 250},
		{123456789, 3086419}, // 3086419.725
	}
	for _, tt := range tests {
		if got := Zakat(tt.total); got != tt.want {
			t.Errorf("Zakat(%d) = %d, want %d", tt.total, got, tt.want)
		}
	}
}

func TestDonationValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		d    Donation
		want error
	}{
		{"valid", Donation{AmountCents: 1, Campaign: "water"}, nil},
		{"zero amount", Donation{AmountCents: 0, Campaign: "water"}, ErrNonPositiveAmount},
		{"negative amount", Donation{AmountCents: -5, Campaign: "water"}, ErrNonPositiveAmount},
		{"no campaign", Donation{AmountCents: 100}, ErrNoCampaign},
	}
	for _, tt := range tests {
		err := tt.d.Validate()
		if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestDonorStateApply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		start DonorState
		d     Donation
		want  DonorState
	}{
		{"first donation", DonorState{}, Donation{AmountCents: 10000, Campaign: "c"}, DonorState{TotalCents: 10000, Count: 1, ZakatCents: 250}},
		// Zakat follows the total: 39 then 1 cent gives 1 cent of zakat,
		// where summing per-donation zakat would give 0.
		{"zakat from total", DonorState{TotalCents: 39, Count: 1, ZakatCents: 0}, Donation{AmountCents: 1, Campaign: "c"}, DonorState{TotalCents: 40, Count: 2, ZakatCents: 1}},
		{"zakat fixed if stale", DonorState{TotalCents: 100, Count: 3, ZakatCents: 999}, Donation{AmountCents: 100, Campaign: "c"}, DonorState{TotalCents: 200, Count: 4, ZakatCents: 5}},
	}
	for _, tt := range tests {
		if got := tt.start.Apply(tt.d); got != tt.want {
			t.Errorf("%s: Apply = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestCampaignStateApply(t *testing.T) {
	t.Parallel()
	s := CampaignState{}
	s = s.Apply(Credit{AmountCents: 500, Donor: "alice"})
	s = s.Apply(Credit{AmountCents: 250, Donor: "bob"})
	if want := (CampaignState{TotalCents: 750, Count: 2}); s != want {
		t.Errorf("Apply twice = %+v, want %+v", s, want)
	}
}
