// Package host runs handler plugins for a worker: it launches each plugin
// binary as a go-plugin gRPC subprocess, learns its handlers with Describe,
// and sends it batches of jobs with Handle.
//
// The Manager supervises its plugins: a plugin that exited is relaunched
// before the next call (with a growing delay if it keeps dying), a call
// that hangs is cut at its deadline and the plugin replaced, and a reply
// that does not match the request is rejected with ErrBadReply. Plugin
// processes die with the worker, even when the worker is SIGKILLed (Linux).
// In every failure case Handle returns an error and the caller retries the
// batch; a plugin never takes the worker down.
//
//	cfg := host.DefaultConfig()
//	cfg.Paths = []string{"bin/donations-plugin"}
//	m, err := host.New(cfg)
//	if err != nil {
//		return err
//	}
//	if err := m.Start(ctx); err != nil {
//		return err
//	}
//	defer m.Stop()
//	resp, err := m.Handle(ctx, &pluginpb.HandleRequest{Entities: states, Jobs: jobs})
package host
