package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// procs are the processes whose CPU the benchmark charges to the jobs.
type procs struct {
	redis   int
	workers []int
	plugins []int
}

// findProcs reads the pid files the cluster script leaves in state and
// finds each worker's plugin subprocesses.
func findProcs(state string) (procs, error) {
	var p procs
	var err error
	if p.redis, err = readPid(filepath.Join(state, "redis.pid")); err != nil {
		return p, err
	}
	files, _ := filepath.Glob(filepath.Join(state, "worker-*.pid"))
	for _, f := range files {
		pid, err := readPid(f)
		if err != nil {
			return p, err
		}
		p.workers = append(p.workers, pid)
		p.plugins = append(p.plugins, childrenOf(pid)...)
	}
	if len(p.workers) == 0 {
		return p, fmt.Errorf("no worker pid files in %s", state)
	}
	return p, nil
}

func readPid(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// childrenOf lists the direct children of pid, from every thread's
// children file.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// cpuSeconds is user+system CPU time of pid so far, with that of its
// children it waited for (Redis's AOF rewrites), 0 if it is gone.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command name, which may hold spaces, in parentheses.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 15 {
		return 0
	}
	var sum float64
	for _, i := range []int{11, 12, 13, 14} { // utime, stime, cutime, cstime
		v, _ := strconv.ParseFloat(f[i], 64)
		sum += v
	}
	return sum / 100 // USER_HZ is 100 on Linux
}

func sumCPU(pids []int) float64 {
	var s float64
	for _, p := range pids {
		s += cpuSeconds(p)
	}
	return s
}

// cpuSnap is the CPU time of each process class at one moment.
type cpuSnap struct{ redis, workers, plugins float64 }

func (p procs) cpu() cpuSnap {
	return cpuSnap{redis: cpuSeconds(p.redis), workers: sumCPU(p.workers), plugins: sumCPU(p.plugins)}
}

// peakRSS is the largest VmHWM (peak resident set) among pids, in bytes.
func peakRSS(pids []int) int64 {
	var peak int64
	for _, pid := range pids {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				peak = max(peak, kb*1024)
			}
		}
		f.Close()
	}
	return peak
}

// cmdStat is what Redis reports for one command: calls and the time
// spent in them, commands called from Lua scripts included.
type cmdStat struct {
	calls int64
	usec  int64
}

// commandCalls is Redis's commandstats, per command name.
func commandCalls(ctx context.Context, rdb *redis.Client) (map[string]cmdStat, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis commandstats: %w", err)
	}
	out := map[string]cmdStat{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st cmdStat
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				st.calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				st.usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out, nil
}

// callsBetween is the total of commands run between two commandstats
// snapshots, less skip (the benchmark's own).
func callsBetween(before, after map[string]cmdStat, skip int64) int64 {
	var n int64
	for k, v := range after {
		n += v.calls - before[k].calls
	}
	return n - skip
}

// topCommands lists the commands that took the most Redis time between
// two snapshots, as "name calls/job µs/job", most expensive first. EVALSHA's
// time includes the commands its script called.
func topCommands(before, after map[string]cmdStat, jobs float64, n int) string {
	type row struct {
		name        string
		calls, usec int64
	}
	var rows []row
	for k, v := range after {
		r := row{k, v.calls - before[k].calls, v.usec - before[k].usec}
		if r.calls > 0 {
			rows = append(rows, r)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].usec > rows[j].usec })
	var b strings.Builder
	for i, r := range rows {
		if i == n {
			break
		}
		fmt.Fprintf(&b, "  %-10s %5.2f calls/job %6.2f µs/job\n", r.name, float64(r.calls)/jobs, float64(r.usec)/jobs)
	}
	return b.String()
}
