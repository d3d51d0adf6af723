package host

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// BenchmarkRestart measures how long a SIGKILLed plugin takes to serve
// again while calls keep coming: the failed call relaunches it (one retry
// on a new process) and the next call goes through.
//
//	go test -run '^$' -bench Restart -benchtime 20x ./plugins/host
func BenchmarkRestart(b *testing.B) {
	donations, _ := buildPlugins(b)
	m := startWith(b, func(c *Config) { c.MaxRestarts = 1 << 20 }, donations)
	sup := m.sups[0]
	for b.Loop() {
		pid := sup.pid()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		// As under load: calls keep coming and must succeed again.
		for {
			_, err := m.Handle(context.Background(), donationBatch())
			if p := sup.pid(); err == nil && p != 0 && p != pid {
				break
			}
			time.Sleep(time.Millisecond) // the poll interval, short so it hardly pads the time measured
		}
		// Stay up past the backoff so every round restarts at once.
		b.StopTimer()
		sup.mu.Lock()
		sup.crashes = 1
		sup.mu.Unlock()
		b.StartTimer()
	}
}

// BenchmarkReload measures a hot reload of the donations plugin: launch,
// describe and swap in the new process, retire the old one.
//
//	go test -run '^$' -bench Reload -benchtime 20x ./plugins/host
func BenchmarkReload(b *testing.B) {
	donations, _ := buildPlugins(b)
	m := startWith(b, nil, donations)
	for b.Loop() {
		if _, err := m.Reload(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReloadPython is BenchmarkReload for the Python plugin.
func BenchmarkReloadPython(b *testing.B) {
	py := pythonPlugin(b)
	m := startWith(b, nil, py)
	for b.Loop() {
		if _, err := m.Reload(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}
