package worker

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/api/workerpb"
	"github.com/corralhq/corral/internal/testenv"
	"github.com/corralhq/corral/plugins/host"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// donateHandlers declares donor.donate and runs nothing: these tests
// submit, they do not process.
type donateHandlers struct{ idleHandlers }

func (donateHandlers) Handlers() map[string]host.HandlerInfo {
	return map[string]host.HandlerInfo{"donor.donate": {Plugin: "donations", Version: "1"}}
}

// submitWorker is a worker, not started, whose store talks to addr.
func submitWorker(t *testing.T, addr string) *Worker {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		MaxRetries: 1, DialTimeout: 300 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	cfg := DefaultConfig()
	cfg.ID = "w-submit"
	w, err := New(cfg, rdb, nil, donateHandlers{}, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func submitJobs(n int) *workerpb.SubmitRequest {
	req := &workerpb.SubmitRequest{}
	for i := range n {
		req.Jobs = append(req.Jobs, &workerpb.Job{Id: fmt.Sprintf("j-%d", i), Handler: "donor.donate",
			Key: fmt.Sprintf("k-%d", i), Payload: []byte(`{"amount_cents": 1}`)})
	}
	return req
}

// wantUnavailable fails unless Submit failed as a whole with Unavailable:
// an infrastructure error is no reason to reject a job.
func wantUnavailable(t *testing.T, what string, resp *workerpb.SubmitResponse, err error) {
	t.Helper()
	if err == nil {
		for _, r := range resp.GetResults() {
			if r.Error != "" {
				t.Fatalf("%s: job %s rejected: %s; want the call Unavailable", what, r.Id, r.Error)
			}
		}
		t.Fatalf("%s: submit succeeded", what)
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("%s: %v, want Unavailable", what, err)
	}
}

// TestSubmitRedisTimeoutIsUnavailable: Redis answers too late (its replies
// held by a proxy past the read timeout): the call is Unavailable, no job
// is rejected; sent again once Redis answers, the jobs the first call
// wrote are duplicates, and the others are enqueued.
func TestSubmitRedisTimeoutIsUnavailable(t *testing.T) {
	if testing.Short() {
		t.Skip("needs redis-server")
	}
	r := testenv.StartRedis(t)
	px := testenv.StartProxy(t, r.Addr)
	w := submitWorker(t, px.Addr)
	ctx := context.Background()
	req := submitJobs(20)

	px.Delay(time.Second)
	resp, err := w.API().Submit(ctx, req)
	wantUnavailable(t, "Redis slow", resp, err)
	t.Logf("Redis slow: %v", err)

	px.Delay(0)
	resp, err = w.API().Submit(ctx, req)
	if err != nil {
		t.Fatalf("submit again once Redis answers: %v", err)
	}
	for _, r := range resp.Results {
		if r.Error != "" {
			t.Fatalf("job %s rejected on the second try: %s", r.Id, r.Error)
		}
	}
}

// TestSubmitRedisLoadingIsUnavailable: a Redis still loading its data set
// answers LOADING to every command; the call is Unavailable, not a
// rejection of its jobs.
func TestSubmitRedisLoadingIsUnavailable(t *testing.T) {
	addr := loadingRedis(t)
	w := submitWorker(t, addr)
	resp, err := w.API().Submit(context.Background(), submitJobs(3))
	wantUnavailable(t, "Redis loading", resp, err)
	if !strings.Contains(err.Error(), "LOADING") {
		t.Errorf("error %q does not say Redis is loading", err)
	}
}

// loadingRedis listens on a free port and answers every command as a
// Redis loading its AOF does.
func loadingRedis(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				rd := bufio.NewReader(c)
				for {
					if err := skipCommand(rd); err != nil {
						return
					}
					if _, err := c.Write([]byte("-LOADING Redis is loading the dataset in memory\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// skipCommand reads one RESP command (an array of bulk strings).
func skipCommand(rd *bufio.Reader) error {
	line, err := rd.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "*") {
		return fmt.Errorf("not a command: %q", line)
	}
	n, err := strconv.Atoi(strings.TrimSpace(line[1:]))
	if err != nil {
		return err
	}
	for range n {
		hdr, err := rd.ReadString('\n')
		if err != nil {
			return err
		}
		size, err := strconv.Atoi(strings.TrimSpace(hdr[1:]))
		if err != nil {
			return err
		}
		if _, err := rd.Discard(size + 2); err != nil {
			return err
		}
	}
	return nil
}
