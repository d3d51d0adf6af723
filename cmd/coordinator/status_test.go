package main

import (
	"strings"
	"testing"

	"github.com/corralhq/corral/discovery"
	"github.com/corralhq/corral/internal/handlerset"
)

func TestHandlerDifferences(t *testing.T) {
	meta := func(hs map[string]handlerset.Served) map[string]string {
		m, err := handlerset.New(hs).Meta()
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	v1 := meta(map[string]handlerset.Served{"donor.donate": {Plugin: "donations", Version: "0.1.0"}})
	both := meta(map[string]handlerset.Served{"donor.donate": {Plugin: "donations", Version: "0.1.0"}, "account.add": {Plugin: "chaos", Version: "0.1.0"}})
	if got := handlerDifferences([]discovery.Member{{ID: "w1", Meta: v1}, {ID: "w2", Meta: v1}}); len(got) != 0 {
		t.Fatalf("same sets: %v", got)
	}
	got := strings.Join(handlerDifferences([]discovery.Member{{ID: "w1", Meta: both}, {ID: "w2", Meta: v1}}), "\n")
	if got != "w2 lacks account.add (served elsewhere by chaos@0.1.0)" {
		t.Fatalf("differences: %q", got)
	}
}
