package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// The dashboard's only writes: replaying and purging dead letters. They
// are POSTs with a JSON body and the header X-Corral-Action, which a page
// of another site cannot send without a CORS preflight the dashboard never
// grants, and from the dashboard's own origin only.

// actionHeader must be on every action request.
const actionHeader = "X-Corral-Action"

// Actions says whether the dashboard may replay and purge dead letters.
type Actions struct {
	// Allowed turns the actions on. The worker allows them when it serves
	// no TLS: then any client of its API may do the same. With TLS roles
	// on, only an admin certificate may, and the dashboard, served in
	// plain HTTP on the metrics address, cannot see one.
	Allowed bool
	// Admin, when set, allows them to each request it accepts (the
	// worker's: a client certificate of role admin, on a dashboard served
	// with mutual TLS).
	Admin func(r *http.Request) error
	// Why is told to the user when they are off.
	Why string
}

// allowed says whether r may act, and why not.
func (a Actions) allowed(r *http.Request) (bool, string) {
	if a.Allowed {
		return true, ""
	}
	if a.Admin != nil {
		if err := a.Admin(r); err != nil {
			return false, a.Why + ": " + err.Error()
		}
		return true, ""
	}
	return false, a.Why
}

type idsRequest struct {
	IDs []string `json:"ids"`
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	ok, why := s.actions.allowed(r)
	writeJSON(w, map[string]any{"self": s.self, "actions": ok, "actions_off": why})
}

// deadAction answers POST api/dead/replay and api/dead/purge.
func (s *Server) deadAction(replay bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if ok, why := s.actions.allowed(r); !ok {
			http.Error(w, why, http.StatusForbidden)
			return
		}
		if r.Header.Get(actionHeader) == "" || r.Header.Get("Content-Type") != "application/json" || !sameOrigin(r) {
			http.Error(w, "an action needs the dashboard's own page (JSON body, "+actionHeader+" header, same origin)", http.StatusForbidden)
			return
		}
		var req idsRequest
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil || len(req.IDs) == 0 || len(req.IDs) > 500 {
			http.Error(w, `the body must be {"ids": [1 to 500 dead letter ids]}`, http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		f := s.src.PurgeDead
		if replay {
			f = s.src.ReplayDead
		}
		n, err := f(ctx, req.IDs)
		if err != nil {
			http.Error(w, err.Error(), httpStatus(err))
			return
		}
		writeJSON(w, map[string]int{"count": n})
	}
}

// sameOrigin is true unless the request names an origin other than the
// host it was sent to.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}
