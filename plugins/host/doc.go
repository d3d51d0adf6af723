// Package host runs handler plugins for a worker: it launches each plugin
// binary as a go-plugin gRPC subprocess, learns its handlers with Describe,
// and sends it batches of jobs with Handle.
//
// The Manager supervises its plugins like an OTP supervisor: a plugin that
// exited is relaunched (by the next call, or by its watcher within 50ms),
// with a growing delay if it keeps dying; more than Config.MaxRestarts
// restarts within Config.RestartWindow make the manager Degraded until the
// plugin stays up; a call that hangs is cut at its deadline and the process
// replaced; a reply that does not match the request is rejected with
// ErrBadReply, and one over the shared message limit with
// ErrMessageTooLarge. Plugin processes die with the worker, even when the
// worker is SIGKILLed (Linux). In every failure case Handle returns an
// error and the caller retries the batch; a plugin never takes the worker
// down.
//
// A plugin that fails to come up is reported as a LaunchError carrying its
// exit status and last stderr lines.
//
// Reload upgrades plugins in place: new processes are started from the
// (possibly replaced) binaries and swapped in only if all of them come up;
// calls in flight finish on the old processes. The manager keeps a private
// copy of every binary it launched (Config.CacheDir): a plugin that
// crashes is relaunched from the binary it was running, whatever file its
// path holds by then, so a new file at the path runs only through a
// reload, which refuses it if it does not come up; PluginStatus reports
// such files. Binaries may be pinned by SHA-256 (Config.Checksums,
// Config.ChecksumFile) and are then refused with ErrChecksumMismatch when
// they differ. Every plugin talks to the worker over go-plugin's AutoMTLS.
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
