package host

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"
)

// pluginLog is where go-plugin's logging for one plugin goes: its own
// messages and the plugin's stderr lines, which it re-logs through an
// hclog logger. The hclog logger writes JSON into a lineWriter that turns
// each line back into a slog record, so the worker has one log.
type pluginLog struct {
	logger atomic.Pointer[slog.Logger] // has plugin=<name>; renamed after Describe
}

func newPluginLog(base *slog.Logger, name string) *pluginLog {
	l := &pluginLog{}
	l.setName(base, name)
	return l
}

func (l *pluginLog) setName(base *slog.Logger, name string) {
	l.logger.Store(base.With("plugin", name))
}

func (l *pluginLog) slog() *slog.Logger { return l.logger.Load() }

// hclog returns the logger to give go-plugin.
func (l *pluginLog) hclog() hclog.Logger {
	level := hclog.Info
	if l.slog().Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Level:      level,
		JSONFormat: true,
		Output:     &lineWriter{emit: l.emitJSON},
	})
}

// stdio returns a writer for the plugin's stdout or stderr written after it
// started serving (fmt.Println and the like), logged line by line.
func (l *pluginLog) stdio(stream string) *lineWriter {
	return &lineWriter{emit: func(line []byte) {
		l.slog().Info(string(line), "stream", stream)
	}}
}

func (l *pluginLog) emitJSON(line []byte) {
	var fields map[string]any
	if err := json.Unmarshal(line, &fields); err != nil {
		l.slog().Info(string(line))
		return
	}
	level := slogLevel(fields["@level"])
	msg := fmt.Sprint(fields["@message"])
	module, _ := fields["@module"].(string)
	// slog stamps its own time; the rest are hclog's or go-plugin's keys.
	for _, k := range []string{"@level", "@message", "@module", "@timestamp", "timestamp"} {
		delete(fields, k)
	}
	// go-plugin logs the binary's path as "plugin", which would shadow ours.
	if p, ok := fields["plugin"]; ok {
		delete(fields, "plugin")
		if _, taken := fields["path"]; !taken {
			fields["path"] = p
		}
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+1)
	if module != "" {
		attrs = append(attrs, slog.String("module", module))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, fields[k]))
	}
	l.slog().LogAttrs(context.Background(), level, msg, attrs...)
}

func slogLevel(v any) slog.Level {
	s, _ := v.(string)
	switch strings.ToLower(s) {
	case "trace":
		return slog.LevelDebug - 4
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// lineWriter calls emit once per complete line written to it.
type lineWriter struct {
	emit func(line []byte)
	// max, when positive, cuts every line to its first max bytes, so one
	// endless line cannot grow the buffer.
	max int

	mu  sync.Mutex
	buf []byte
	cut bool // the line being buffered was cut: drop the rest of it
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.max <= 0 {
		w.buf = append(w.buf, p...)
	} else {
		w.appendCut(p)
	}
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		if line := bytes.TrimRight(w.buf[:i], "\r"); len(line) > 0 {
			w.emit(line)
		}
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large line's buffer go
	}
	return len(p), nil
}

// appendCut appends p to the buffer keeping at most max bytes of each line.
func (w *lineWriter) appendCut(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		part := p
		if i >= 0 {
			part = p[:i]
		}
		if !w.cut {
			start := bytes.LastIndexByte(w.buf, '\n') + 1
			room := w.max - (len(w.buf) - start)
			if len(part) > room {
				part, w.cut = part[:room], true
			}
			w.buf = append(w.buf, part...)
		}
		if i < 0 {
			return
		}
		w.buf, w.cut = append(w.buf, '\n'), false
		p = p[i+1:]
	}
}
