package metrics_test

import (
	"net/http"
	"testing"

	"github.com/corralhq/corral/internal/metrics"
)

func TestProfilesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []metrics.Option
		want int
	}{
		{"default", nil, http.StatusNotFound},
		{"with profiles", []metrics.Option{metrics.WithProfiles()}, http.StatusOK},
	} {
		m := metrics.NewWorker("w1", metrics.Source{})
		srv, err := metrics.Listen("127.0.0.1:0", m.Registry(), nil, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		resp, err := http.Get("http://" + srv.Addr() + "/debug/pprof/")
		srv.Stop()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: /debug/pprof/ answered %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
}
