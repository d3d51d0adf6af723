package ui

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

// Prefix is where the dashboard is mounted.
const Prefix = "/ui/"

// keepSamples is the throughput history: ten minutes of seconds.
const keepSamples = 600

// Server serves the dashboard's pages and JSON. It reads, with GET and
// HEAD; its only writes are the dead-letter actions (actions.go), POSTs
// allowed when actions says so.
type Server struct {
	self    string
	src     Source
	actions Actions
	sampler *sampler
	mux     *http.ServeMux
}

// New builds the dashboard of worker self reading src. Stop ends its
// sampling.
func New(self string, src Source, actions Actions) *Server {
	return newServer(self, src, actions, time.Now)
}

func newServer(self string, src Source, actions Actions, now func() time.Time) *Server {
	s := &Server{self: self, src: src, actions: actions, sampler: newSampler(src, self, keepSamples, now), mux: http.NewServeMux()}
	static, _ := fs.Sub(assets, "assets")
	s.mux.Handle(Prefix, http.StripPrefix(Prefix, http.FileServerFS(static)))
	s.mux.HandleFunc(Prefix+"api/cluster", func(w http.ResponseWriter, r *http.Request) {
		s.sampler.touch()
		writeJSON(w, s.sampler.view())
	})
	s.mux.HandleFunc(Prefix+"api/throughput", func(w http.ResponseWriter, r *http.Request) {
		s.sampler.touch()
		writeJSON(w, map[string]any{"interval_ms": s.sampler.interval.Milliseconds(), "samples": s.sampler.samples()})
	})
	s.mux.HandleFunc(Prefix+"api/dead", s.deadLetters)
	s.mux.HandleFunc(Prefix+"api/dead/show", s.showDead)
	s.mux.HandleFunc(Prefix+"api/dead/replay", s.deadAction(true))
	s.mux.HandleFunc(Prefix+"api/dead/purge", s.deadAction(false))
	s.mux.HandleFunc(Prefix+"api/jobs", s.listJobs)
	s.mux.HandleFunc(Prefix+"api/job", s.showJob)
	s.mux.HandleFunc(Prefix+"api/config", s.config)
	return s
}

// ServeHTTP answers reads, and the POSTs of the actions, with headers that
// keep the pages from loading anything but their own files or being
// framed by another site.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	action := r.URL.Path == Prefix+"api/dead/replay" || r.URL.Path == Prefix+"api/dead/purge"
	if !action && r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard only reads, but for replaying and purging dead letters", http.StatusMethodNotAllowed)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Stop ends the sampling; safe to call twice.
func (s *Server) Stop() { s.sampler.Stop() }

func (s *Server) deadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			http.Error(w, "limit must be 1 to 500", http.StatusBadRequest)
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	dead, next, err := s.src.DeadLetters(ctx, limit, r.URL.Query().Get("after"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	if dead == nil {
		dead = []DeadLetter{}
	}
	writeJSON(w, map[string]any{"dead": dead, "next": next})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
