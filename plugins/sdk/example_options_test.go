package sdk_test

import (
	"context"
	"fmt"
	"time"

	"github.com/corralhq/corral/plugins/pluginpb"
	"github.com/corralhq/corral/plugins/sdk"
)

// Options are declared per handler and sent to the worker in Describe; 0
// or "" leaves a setting to the worker (10 s deadline, 5 attempts). The
// shape is sent as a JSON object with its fields sorted.
func ExamplePlugin_Describe() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("shop", "1.0.0",
		sdk.Handler("order.place", noop,
			sdk.Timeout(5*time.Second),
			sdk.MaxAttempts(3),
			sdk.Concurrency(2),
			sdk.ShapeOf[order]()),
		sdk.Handler("order.cancel", noop),
	)

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	for _, h := range desc.Handlers {
		fmt.Printf("%s timeout=%dms attempts=%d concurrency=%d shape=%q\n",
			h.Name, h.TimeoutMs, h.MaxAttempts, h.Concurrency, h.PayloadShape)
	}
	// Output:
	// order.place timeout=5000ms attempts=3 concurrency=2 shape="{\"item\":\"string\",\"qty\":\"integer\"}"
	// order.cancel timeout=0ms attempts=0 concurrency=0 shape=""
}

// Timeout is the deadline of a whole Handle call. When it passes, the
// Call's context is done: a handler that may block passes the context on,
// or watches it, and returns.
func ExampleTimeout() {
	started := make(chan struct{})
	slow := func(c *sdk.Call) error {
		close(started)
		select {
		case <-time.After(time.Minute): // stands for slow work that takes a context
			return nil
		case <-c.Context().Done():
			return c.Context().Err() // a failed attempt, retried
		}
	}
	p := sdk.New("reports", "1.0.0", sdk.Handler("report.build", slow, sdk.Timeout(30*time.Second)))

	// The worker ends the context when the deadline passes; this test ends
	// it as soon as the job has started.
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	resp, _ := p.Handle(ctx, &pluginpb.HandleRequest{
		Jobs: []*pluginpb.Job{{Id: "b1", Handler: "report.build", Key: "2026-05", Payload: []byte(`{}`), Attempt: 1}},
	})
	o := resp.Outcomes[0]
	fmt.Println(o.Status, o.Error)
	// Output:
	// RETRY context canceled
}

// MaxAttempts(1) never retries: the first failed attempt dead-letters the
// job. A submitter may still set a job's own limit, which wins.
func ExampleMaxAttempts() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("mail", "1.0.0", sdk.Handler("mailbox.deliver", noop, sdk.MaxAttempts(1)))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Println(desc.Handlers[0].Name, desc.Handlers[0].MaxAttempts)
	// Output:
	// mailbox.deliver 1
}

// Concurrency(1) lets one transcode run at a time in the whole cluster:
// the workers hold a Redis slot per attempt in flight, and the other jobs
// of the handler wait, without spending attempts, for a slot.
func ExampleConcurrency() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("media", "1.0.0", sdk.Handler("video.transcode", noop, sdk.Concurrency(1)))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Println(desc.Handlers[0].Name, desc.Handlers[0].Concurrency)
	// Output:
	// video.transcode 1
}

type signup struct {
	Email    string    `json:"email"`
	Age      int       `json:"age"`
	Score    float64   `json:"score"`
	Tags     []string  `json:"tags"`
	At       time.Time `json:"at"`
	Referrer string    `json:"referrer,omitempty"` // optional: checked when present
	Internal string    `json:"-"`                  // never in JSON
}

// ShapeOf derives the required fields and their JSON types from a struct,
// as encoding/json would marshal it, makes its omitempty fields optional,
// and closes the shape. The worker refuses a submitted job whose payload
// lacks a required field, has one of another type (1.5 or 1e3 for an
// integer), or has a field the struct does not.
func ExampleShapeOf() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("accounts", "1.0.0", sdk.Handler("account.signup", noop, sdk.ShapeOf[signup]()))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	h := desc.Handlers[0]
	fmt.Println("required", h.PayloadShape)
	fmt.Println("optional", h.PayloadOptional)
	fmt.Println("closed", h.PayloadClosed)
	// Output:
	// required {"age":"integer","at":"string","email":"string","score":"number","tags":"array"}
	// optional {"referrer":"string"}
	// closed true
}

// PayloadShape declares the required fields by hand, e.g. for a payload
// that no Go struct describes. Other fields are let through unless the
// handler declares NoUnknownFields.
func ExamplePayloadShape() {
	noop := func(*sdk.Call) error { return nil }
	p := sdk.New("donations", "1.0.0", sdk.Handler("donor.donate", noop,
		sdk.PayloadShape(map[string]string{"campaign": "string", "amount_cents": "integer"})))

	desc, _ := p.Describe(context.Background(), &pluginpb.DescribeRequest{})
	fmt.Println(desc.Handlers[0].PayloadShape)
	// Output:
	// {"amount_cents":"integer","campaign":"string"}
}
