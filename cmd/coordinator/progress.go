package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// fileProgress shows how far a file submission is: on a terminal a bar
// with the rate and the time left, else a plain line every few seconds
// (logs and pipes get no control characters). It also says when the
// cluster holds the submission back because a queue is full.
type fileProgress struct {
	w     io.Writer
	total int64 // lines in the file; -1: unknown (stdin)
	start time.Time
	bar   *progressbar.ProgressBar // nil: plain lines
	every time.Duration

	mu       sync.Mutex
	lastLine time.Time
	full     client.QueueFull // the last full queue heard of
	fullAt   time.Time
}

// plainEvery is how often a plain progress line is printed.
const plainEvery = 2 * time.Second

// newFileProgress counts the lines of path (unless it is stdin) and
// chooses the bar when w is a terminal.
func newFileProgress(w io.Writer, path string) *fileProgress {
	p := &fileProgress{w: w, total: -1, start: time.Now(), every: plainEvery}
	p.lastLine = p.start // the first line after plainEvery
	if path != "-" {
		if n, err := countLines(path); err == nil {
			p.total = n
		}
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = progressbar.NewOptions64(p.total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription("submitting"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("jobs"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionSetElapsedTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30),
			progressbar.OptionClearOnFinish(),
		)
	}
	return p
}

// countLines counts a file's lines, as the submission will number them.
func countLines(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	var n int64
	last := byte('\n')
	for {
		k, err := r.Read(buf)
		if k > 0 {
			n += int64(bytes.Count(buf[:k], []byte{'\n'}))
			last = buf[k-1]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if last != '\n' {
		n++
	}
	return n, nil
}

// queueFull notes that a partition's queue refused jobs; the submission
// backs off and sends them again.
func (p *fileProgress) queueFull(q client.QueueFull) {
	p.mu.Lock()
	p.full, p.fullAt = q, time.Now()
	p.mu.Unlock()
}

// update shows settled lines (answered, rejected or skipped) of the
// file; the caller holds the submission's lock, so lines print in order.
// A plain line is printed at most every few seconds, unless final.
func (p *fileProgress) update(settled int, st submitStats, final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	held := ""
	if !p.fullAt.IsZero() && now.Sub(p.fullAt) < 3*time.Second {
		held = fmt.Sprintf("held back: partition %d holds %d jobs, its limit %d", p.full.Partition, p.full.Depth, p.full.Max)
	}
	if p.bar != nil {
		desc := "submitting"
		if held != "" {
			desc = "waiting, " + held
		}
		p.bar.Describe(desc)
		p.bar.Set64(int64(settled))
		return
	}
	switch {
	case final && p.lastLine.Equal(p.start):
		return // a short submission: its summary says it all
	case !final && now.Sub(p.lastLine) < p.every:
		return
	}
	p.lastLine = now
	el := now.Sub(p.start)
	rate := float64(settled) / max(el.Seconds(), 1e-3)
	line := fmt.Sprintf("... %d lines", settled)
	if p.total >= 0 {
		line = fmt.Sprintf("... %d of %d lines", settled, p.total)
	}
	line += fmt.Sprintf(", %d submitted, %d duplicates, %d rejected, %.0f jobs/s", st.submitted, st.duplicates, st.rejected, rate)
	if p.total > 0 && rate > 0 && int64(settled) < p.total {
		line += fmt.Sprintf(", about %v left", time.Duration(float64(p.total-int64(settled))/rate*float64(time.Second)).Round(time.Second))
	}
	if held != "" {
		line += "; " + held
	}
	fmt.Fprintln(p.w, line)
}

// clear takes the bar off the screen before a line of report.
func (p *fileProgress) clear() {
	if p.bar != nil {
		p.bar.Clear()
	}
}

// finish ends the bar.
func (p *fileProgress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
