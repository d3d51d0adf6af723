package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

var lineSamples = []string{
	`{"id":"don-1-0","handler":"donor.donate","key":"donor-00980","payload":{"amount_cents":7766,"campaign":"campaign-003"}}`,
	`{"payload": [1, 2] , "key":"k","handler":"h","id":"i"}`,
	`{"id":"a","id":"b","handler":"h","key":"k","payload":1,"payload":"x"}`,
	`{"id":"a","id":null,"key":"k"}`,
	`{"ID":"a","Handler":"h","KEY":"k","Payload":{}}`,
	`{"id":"a\u0062","handler":"h","key":"k\n","payload":{}}`,
	`{"id":"é","handler":"h","key":"José","payload":"ü"}`,
	"{\"id\":\"a\",\"key\":\"\xff\",\"payload\":{}}",
	`{"id":1,"handler":"h","key":"k","payload":{}}`,
	`{"id":"a","handler":"h","key":"k","payload":null}`,
	`{"id":"a","handler":"h","key":"k"}`,
	`{"id":"a","handler":"h","key":"k","payload":{},"extra":[1,{"x":2}]}`,
	`{"\u0069d":"a","handler":"h","key":"k","payload":{}}`,
	`{}`, `[]`, `null`, `"x"`, `{"id":"f2","handler":"account.add",`, `{"id":"a","payload":{"x":}}`, `{"id":"a"} x`,
	` {"id" : "a" , "payload" : { "x" : 1 } } `,
}

// checkLine compares the one-pass reading of a line with encoding/json's.
func checkLine(t *testing.T, line []byte) {
	t.Helper()
	var p lineParser
	got, err := p.parse(line)
	var want fileJob
	wantErr := json.Unmarshal(line, &want)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("line %q: error %v, encoding/json: %v", line, err, wantErr)
	}
	if err != nil {
		return
	}
	if got.Id != want.ID || got.Handler != want.Handler || got.Key != want.Key || !bytes.Equal(got.Payload, want.Payload) || (got.Payload == nil) != (want.Payload == nil) {
		t.Fatalf("line %q: read %q %q %q %q, encoding/json %q %q %q %q", line, got.Id, got.Handler, got.Key, got.Payload, want.ID, want.Handler, want.Key, want.Payload)
	}
}

func TestLineParserAgreesWithEncodingJSON(t *testing.T) {
	for _, l := range lineSamples {
		checkLine(t, []byte(l))
	}
}

// A parsed job must not change when later lines are parsed: the jobs of a
// batch point into shared blocks until their call returns.
func TestLineParserKeepsEarlierJobs(t *testing.T) {
	var p lineParser
	first, err := p.parse([]byte(`{"id":"a","handler":"h","key":"k","payload":{"n":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	for range 5000 {
		if _, err := p.parse([]byte(`{"id":"b","handler":"h2","key":"k2","payload":{"n":22222222222222}}`)); err != nil {
			t.Fatal(err)
		}
	}
	if first.Id != "a" || first.Handler != "h" || first.Key != "k" || string(first.Payload) != `{"n":1}` {
		t.Fatalf("first job changed: %v", first)
	}
}

func FuzzLineParser(f *testing.F) {
	for _, l := range lineSamples {
		f.Add([]byte(l))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		checkLine(t, line)
	})
}

func BenchmarkLineParser(b *testing.B) {
	line := []byte(`{"id":"don-1-0","handler":"donor.donate","key":"donor-00980","payload":{"amount_cents":7766,"campaign":"campaign-003"}}`)
	b.Run("one-pass", func(b *testing.B) {
		var p lineParser
		b.ReportAllocs()
		for b.Loop() {
			if _, err := p.parse(line); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var fj fileJob
			if err := json.Unmarshal(line, &fj); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Lines without an id are named the same in every run, identical lines on
// other line numbers differently.
func TestFileIDsDeterministic(t *testing.T) {
	line := []byte(`{"handler":"donor.donate","key":"alice","payload":{"amount_cents":1}}`)
	var a, b fileIDs
	if a.name(7, line) != b.name(7, line) {
		t.Fatal("the same line got two ids")
	}
	if a.name(7, line) == a.name(8, line) {
		t.Fatal("identical lines on lines 7 and 8 got one id")
	}
	// Pinned: another scheme would make a file sent again after an
	// upgrade count twice.
	if id, want := a.name(7, line), "f-0827cf740d8b660645de77f4b0e125a7"; id != want {
		t.Fatalf("line 7 named %q, want %q", id, want)
	}
}

// Reports come out in line order whatever order the lines settle in, each
// as soon as no earlier line is pending.
func TestLineReportsInFileOrder(t *testing.T) {
	var b bytes.Buffer
	r := lineReports{w: &b, next: 1}
	r.settle([]int{4, 6}, "")
	r.settleOne(5, "line 5: rejected")
	r.settleOne(3, "line 3: malformed")
	if b.Len() != 0 {
		t.Fatalf("printed before lines 1 and 2 settled: %q", b.String())
	}
	r.settleOne(1, "")
	r.settleOne(2, "line 2: rejected")
	if got := b.String(); got != "line 2: rejected\nline 3: malformed\nline 5: rejected\n" {
		t.Fatalf("printed %q", got)
	}
	r.settleOne(9, "line 9: rejected")
	r.settleOne(8, "line 8: rejected")
	r.flush() // line 7 never settled (not sent)
	if got := b.String(); !bytes.HasSuffix([]byte(got), []byte("line 8: rejected\nline 9: rejected\n")) {
		t.Fatalf("flushed %q", got)
	}
}
