// Command chaos-plugin is a test plugin for the job path's guarantees. It
// keeps account totals like the donations plugin, fails on purpose and
// records the order in which each account's jobs commit.
//
// account.add (key: account) adds amount_cents to the account, checks that
// seq grows (a job committed out of order is counted in out_of_order) and
// emits bucket.credit to the bucket named in the payload. Transient
// failures are deterministic: with CORRAL_CHAOS_SEED and
// CORRAL_CHAOS_FAIL_PERCENT set, a job fails on an attempt when
// hash(seed, id, attempt) says so. A payload with "poison" set never
// succeeds: "fail" always asks for a retry, "panic" panics, "hang" blocks
// past the handler's deadline, "reject" fails for good, "typo" emits to a
// handler that does not exist (bucket.credt).
package main

import (
	"errors"
	"hash/fnv"
	"os"
	"strconv"
	"time"

	"github.com/corralhq/corral/plugins/sdk"
)

type add struct {
	AmountCents int64  `json:"amount_cents"`
	Seq         int64  `json:"seq"`
	Bucket      string `json:"bucket"`
	Poison      string `json:"poison,omitempty"`
}

type account struct {
	TotalCents int64 `json:"total_cents"`
	Count      int64 `json:"count"`
	LastSeq    int64 `json:"last_seq"`
	OutOfOrder int64 `json:"out_of_order"`
}

type credit struct {
	AmountCents int64 `json:"amount_cents"`
}

type bucket struct {
	TotalCents int64 `json:"total_cents"`
	Count      int64 `json:"count"`
}

var (
	seed, _        = strconv.ParseUint(os.Getenv("CORRAL_CHAOS_SEED"), 10, 64)
	failPercent, _ = strconv.Atoi(os.Getenv("CORRAL_CHAOS_FAIL_PERCENT"))
)

func main() {
	limits := []sdk.Option{sdk.Timeout(time.Second), sdk.MaxAttempts(4)}
	sdk.New("chaos", "0.1.0",
		sdk.Handler("account.add", addHandler, append(limits,
			sdk.PayloadShape(map[string]string{"amount_cents": "integer", "seq": "integer", "bucket": "string"}))...),
		sdk.Handler("bucket.credit", creditHandler, limits...),
	).Serve()
}

// unlucky says whether this attempt of job id fails on purpose.
func unlucky(id string, attempt int) bool {
	if failPercent <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatUint(seed, 10) + "/" + id + "/" + strconv.Itoa(attempt)))
	return h.Sum64()%100 < uint64(failPercent)
}

func addHandler(c *sdk.Call) error {
	var a add
	if err := c.Decode(&a); err != nil {
		return sdk.Fail(err)
	}
	switch a.Poison {
	case "fail":
		return errors.New("poison: always fails")
	case "panic":
		panic("poison: panics")
	case "hang":
		time.Sleep(time.Hour) // the worker's deadline cuts the call
	case "reject":
		return sdk.Failf("poison: rejected for good")
	}
	if unlucky(c.ID(), c.Attempt()) {
		return errors.New("chaos: transient failure")
	}
	var s account
	if _, err := c.Load(&s); err != nil {
		return err
	}
	if a.Seq <= s.LastSeq {
		s.OutOfOrder++
	}
	s.LastSeq = a.Seq
	s.TotalCents += a.AmountCents
	s.Count++
	if err := c.Save(s); err != nil {
		return err
	}
	target := "bucket.credit"
	if a.Poison == "typo" {
		target = "bucket.credt"
	}
	if err := c.Emit(target, a.Bucket, credit{AmountCents: a.AmountCents}); err != nil {
		return err
	}
	return c.SetResult(map[string]int64{"seq": a.Seq, "total_cents": s.TotalCents})
}

func creditHandler(c *sdk.Call) error {
	var cr credit
	if err := c.Decode(&cr); err != nil {
		return sdk.Fail(err)
	}
	if unlucky(c.ID(), c.Attempt()) {
		return errors.New("chaos: transient failure")
	}
	var s bucket
	if _, err := c.Load(&s); err != nil {
		return err
	}
	s.TotalCents += cr.AmountCents
	s.Count++
	return c.Save(s)
}
