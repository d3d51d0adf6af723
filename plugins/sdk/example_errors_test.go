package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

type payment struct {
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
}

var errBankDown = errors.New("bank unreachable")

// pay shows every way a job can end. The worker commits an OK job,
// finishes a REJECTED job with its reason and nothing else, dead-letters a
// FAIL job at once, and tries a RETRY job again after its backoff (or
// RetryAfterMs, when longer) until its attempts run out.
func pay(c *sdk.Call) error {
	p, err := sdk.Payload[payment](c)
	if err != nil {
		return err // FAIL: this payload will never decode
	}
	switch {
	case p.AmountCents <= 0:
		return sdk.Failf("amount must be positive, got %d", p.AmountCents) // FAIL
	case p.AmountCents > 100_000:
		return sdk.Rejectf("over the limit of %d cents", 100_000) // REJECTED: an answer, not a failure
	case p.Currency == "XAU":
		return sdk.RetryAfter(errors.New("gold desk opens at nine"), 90*time.Second) // RETRY, at least 90 s later
	case p.Currency == "ZZZ":
		return fmt.Errorf("convert %s: %w", p.Currency, errBankDown) // RETRY, after the backoff
	case p.Currency == "":
		panic("no currency") // RETRY, like an error; logged with its stack
	}
	return c.Save(p) // OK
}

// The outcome of a job is decided by what its handler returns: nil, a
// Reject error, a Fail error, a RetryAfter error, any other error, or a
// panic.
func Example_outcomes() {
	p := sdk.New("payments", "1.0.0", sdk.Handler("account.pay", pay))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "p1", Handler: "account.pay", Key: "acct-1", Payload: []byte(`{"amount_cents":500,"currency":"EUR"}`), Attempt: 1},
			{Id: "p2", Handler: "account.pay", Key: "acct-1", Payload: []byte(`{"amount_cents":-5,"currency":"EUR"}`), Attempt: 1},
			{Id: "p3", Handler: "account.pay", Key: "acct-2", Payload: []byte(`{"amount_cents":500,"currency":"XAU"}`), Attempt: 1},
			{Id: "p4", Handler: "account.pay", Key: "acct-3", Payload: []byte(`{"amount_cents":500,"currency":"ZZZ"}`), Attempt: 1},
			{Id: "p5", Handler: "account.pay", Key: "acct-4", Payload: []byte(`{"amount_cents":500}`), Attempt: 1},
			{Id: "p6", Handler: "account.refund", Key: "acct-1", Payload: []byte(`{}`), Attempt: 1},
			{Id: "p7", Handler: "account.pay", Key: "acct-5", Payload: []byte(`{"amount_cents":500000,"currency":"EUR"}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		switch o.Status {
		case pluginpb.Outcome_OK:
			fmt.Println(o.JobId, o.Status, string(o.State))
		case pluginpb.Outcome_RETRY:
			fmt.Printf("%s %v after %dms: %s\n", o.JobId, o.Status, o.RetryAfterMs, o.Error)
		default:
			fmt.Println(o.JobId, o.Status, o.Error)
		}
	}
	// Output:
	// p1 OK {"amount_cents":500,"currency":"EUR"}
	// p2 FAIL amount must be positive, got -5
	// p3 RETRY after 90000ms: gold desk opens at nine
	// p4 RETRY after 0ms: convert ZZZ: bank unreachable
	// p5 RETRY after 0ms: handler panicked: no currency
	// p6 FAIL unknown handler "account.refund": plugin payments does not serve it
	// p7 REJECTED over the limit of 100000 cents
}

// Reject says no for a reason of the business. The job is finished with
// the reason as its answer, which coordinator call prints ("job r1 was
// rejected: out of stock: 3 left"); nothing else of it counts, not even
// the state it saved, so the next job of the key sees the stock as it
// was. The worker never retries a rejected job nor dead-letters it.
func ExampleReject() {
	reserve := sdk.Typed(func(c *sdk.Call, in take, s stock) (stock, error) {
		s.OnHand -= in.Qty
		if s.OnHand < 0 {
			return s, sdk.Rejectf("out of stock: %d left", s.OnHand+in.Qty)
		}
		return s, nil
	})
	p := sdk.New("shop", "1.0.0", sdk.Handler("stock.reserve", reserve))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Entities: []*pluginpb.Entity{{Type: "stock", Key: "sku-1", State: []byte(`{"on_hand":3}`)}},
		Jobs: []*pluginpb.Job{
			{Id: "r1", Handler: "stock.reserve", Key: "sku-1", Payload: []byte(`{"qty":5}`), Attempt: 1},
			{Id: "r2", Handler: "stock.reserve", Key: "sku-1", Payload: []byte(`{"qty":2}`), Attempt: 1},
		},
	})
	for _, o := range resp.Outcomes {
		fmt.Printf("%s %v error=%q state=%s\n", o.JobId, o.Status, o.Error, o.State)
	}
	// Output:
	// r1 REJECTED error="out of stock: 3 left" state=
	// r2 OK error="" state={"on_hand":1}
}

// Fail is for input that will never become good. It is found through
// wrapping, so context can be added to it.
func ExampleFail() {
	check := func(c *sdk.Call) error {
		p, err := sdk.Payload[payment](c)
		if err != nil {
			return err
		}
		if len(p.Currency) != 3 {
			err := sdk.Fail(fmt.Errorf("currency %q is not an ISO 4217 code", p.Currency))
			return fmt.Errorf("check %s: %w", c.ID(), err) // still permanent
		}
		return nil
	}
	p := sdk.New("payments", "1.0.0", sdk.Handler("account.check", check))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{
			{Id: "c1", Handler: "account.check", Key: "acct-1", Payload: []byte(`{"amount_cents":1,"currency":"euro"}`), Attempt: 1},
		},
	})
	o := resp.Outcomes[0]
	fmt.Println(o.Status, o.Error)
	// Output:
	// FAIL check c1: currency "euro" is not an ISO 4217 code
}

// RetryAfter asks for the next attempt no sooner than a delay, rounded up
// to whole milliseconds in the outcome. The worker waits the longer of it
// and its own backoff, and the attempt counts towards MaxAttempts.
func ExampleRetryAfter() {
	limited := func(c *sdk.Call) error {
		return sdk.RetryAfter(errors.New("rate limited"), 1500*time.Microsecond)
	}
	p := sdk.New("payments", "1.0.0", sdk.Handler("account.sync", limited))

	resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{{Id: "s1", Handler: "account.sync", Key: "acct-1", Payload: []byte(`{}`), Attempt: 1}},
	})
	o := resp.Outcomes[0]
	fmt.Println(o.Status, o.RetryAfterMs, o.Error)
	// Output:
	// RETRY 2 rate limited
}

// Attempt tells a handler how many times its job has been tried. This one
// stops retrying on its third attempt and dead-letters the job with a
// reason of its own; the test sets Attempt as the worker would.
func ExampleCall_Attempt() {
	fetch := func(c *sdk.Call) error {
		err := errBankDown // whatever keeps failing
		if c.Attempt() >= 3 {
			return sdk.Fail(fmt.Errorf("giving up after %d attempts: %w", c.Attempt(), err))
		}
		return err
	}
	p := sdk.New("payments", "1.0.0", sdk.Handler("account.fetch", fetch))

	for attempt := int32(1); attempt <= 3; attempt++ {
		resp, _ := p.Handle(context.Background(), &pluginpb.HandleRequest{
			Jobs: []*pluginpb.Job{{Id: "f1", Handler: "account.fetch", Key: "acct-1", Payload: []byte(`{}`), Attempt: attempt}},
		})
		o := resp.Outcomes[0]
		fmt.Println(attempt, o.Status, o.Error)
	}
	// Output:
	// 1 RETRY bank unreachable
	// 2 RETRY bank unreachable
	// 3 FAIL giving up after 3 attempts: bank unreachable
}
