package sdk

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

// startProfile writes a CPU profile of the plugin process when the
// environment asks for one: CORRAL_PLUGIN_CPUPROFILE names the file (the
// process id is appended, one file per plugin process) and
// CORRAL_PLUGIN_CPUPROFILE_SECONDS how long it runs (default 10). The
// worker's environment reaches its plugins, so setting them on a worker
// profiles its plugins. A plugin is stopped without warning, so the
// profile covers a fixed time from the start rather than the whole life.
func startProfile() {
	path := os.Getenv("CORRAL_PLUGIN_CPUPROFILE")
	if path == "" {
		return
	}
	secs, err := strconv.Atoi(os.Getenv("CORRAL_PLUGIN_CPUPROFILE_SECONDS"))
	if err != nil || secs <= 0 {
		secs = 10
	}
	f, err := os.Create(fmt.Sprintf("%s.%d", path, os.Getpid()))
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	time.AfterFunc(time.Duration(secs)*time.Second, func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}
