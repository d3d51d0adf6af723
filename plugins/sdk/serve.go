package sdk

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/corralhq/corral/internal/tracing"
	"github.com/corralhq/corral/plugins"
	"go.opentelemetry.io/otel"
)

// Serve is the whole main of most plugins: it builds a plugin of handlers
// with New and serves it (Plugin.Serve) until the worker that launched the
// program closes the connection. The plugin is named after the program:
// its file name without extension and without a "-plugin" suffix, so
// bin/donations-plugin is "donations". Its version is the one go build
// stamped into the binary: the module version, else the VCS revision (12
// digits, "-dirty" when there were uncommitted changes), else "devel". Use
// New(name, version, handlers...).Serve() to choose both.
//
// Serve panics where New does, on a programming error in the handlers.
//
//	func main() {
//		sdk.Serve(sdk.Handler("donor.donate", donate))
//	}
func Serve(handlers ...HandlerDef) {
	New(programName(), buildVersion(), handlers...).Serve()
}

// Serve serves p to the worker that launched this program, over
// go-plugin's gRPC protocol (with mutual TLS, set up by the worker), and
// returns when the worker closes the connection; the process also dies
// with its worker. Run from a shell, without the worker's environment, it
// prints that it is a plugin and exits with status 1.
//
// Serve points slog's default logger (and so the log package) at the
// worker's log: logs go to stderr as JSON lines, which the worker re-logs
// with plugin=NAME and their level. It also starts a CPU profile when
// CORRAL_PLUGIN_CPUPROFILE is set (see "Logs and profiles" in the package
// documentation).
func (p *Plugin) Serve() {
	// go-plugin swaps os.Stderr for a pipe once it serves; keep the real one.
	stderr := os.Stderr
	logger := slog.New(newLogHandler(stderr))
	slog.SetDefault(logger)
	p.log = logger.With("plugin", p.name)
	startProfile()
	defer startTracing(p.name, logger)()

	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: plugins.Handshake,
		Plugins:         plugins.PluginSet(p),
		GRPCServer:      plugins.NewGRPCServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       p.name,
			Level:      hclog.Info,
			Output:     stderr,
			JSONFormat: true,
		}),
	})
}

// startTracing sets OpenTelemetry's global tracer provider to an OTLP
// exporter when the environment (the worker's) asks for traces, so a
// handler's spans started from Call.Context go where the worker's go. It
// returns what flushes them at exit.
func startTracing(name string, log *slog.Logger) func() {
	tr, err := tracing.FromEnv(context.Background(), name)
	if err != nil {
		log.Warn("tracing off", "err", err)
	}
	if tr == nil {
		return func() {}
	}
	tracing.LogErrors(log)
	otel.SetTracerProvider(tr.Provider())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.Shutdown(ctx)
	}
}

func programName() string {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), filepath.Ext(os.Args[0]))
	if trimmed := strings.TrimSuffix(name, "-plugin"); trimmed != "" {
		return trimmed
	}
	return name
}

func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision" && len(s.Value) >= 12:
			rev = s.Value[:12]
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	if rev != "" {
		return rev + dirty
	}
	return "devel"
}

// hclogTimeFormat is the only timestamp layout go-plugin's host accepts in
// a plugin's JSON log line.
const hclogTimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// newLogHandler writes slog records as JSON lines with hclog's key names, so
// the host keeps each line's level and message instead of logging the raw
// line at debug level.
func newLogHandler(w io.Writer) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.String("@timestamp", a.Value.Time().Format(hclogTimeFormat))
			case slog.LevelKey:
				return slog.String("@level", hclogLevel(a.Value))
			case slog.MessageKey:
				return slog.String("@message", a.Value.String())
			}
			return a
		},
	})
}

func hclogLevel(v slog.Value) string {
	l, ok := v.Any().(slog.Level)
	if !ok {
		return strings.ToLower(v.String())
	}
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}
