package sdk

import (
	"context"
	"errors"
	"testing"

	"github.com/corralhq/corral/plugins/pluginpb"
)

// Without a broker (a test calling Handle directly, or an older worker)
// Query fails with ErrNoHost, and the job is retried rather than applied
// with a made-up answer.
func TestQueryWithoutHost(t *testing.T) {
	t.Parallel()
	var queryErr error
	p := New("q", "1", Handler("a.read", func(c *Call) error {
		var v map[string]any
		_, queryErr = c.Query("b", "k", &v)
		return queryErr
	}))
	resp, err := p.Handle(context.Background(), &pluginpb.HandleRequest{
		Jobs:          []*pluginpb.Job{{Id: "1", Handler: "a.read", Key: "k", Payload: []byte(`{}`)}},
		HostServiceId: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(queryErr, ErrNoHost) {
		t.Fatalf("Query error = %v, want ErrNoHost", queryErr)
	}
	if got := resp.Outcomes[0].GetStatus(); got != pluginpb.Outcome_RETRY {
		t.Fatalf("outcome %v, want RETRY", got)
	}
}
