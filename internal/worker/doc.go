// Package worker is the worker runtime: it turns membership into partition
// ownership (claims and releases under fencing epochs), runs the partitions
// it owns through the handler plugins, relays emitted jobs, keeps its Consul
// check honest, and serves the worker gRPC API.
//
// A Worker composes small components, each with its own state and locks,
// and reaching Redis and its peers through interfaces of its own:
//
//   - membership: the healthy members, their addresses and the ring.
//   - ownership: claims and releases partitions as the ring says, drains,
//     and steps down when Consul or the lease is lost (claimStore, leaseHolder).
//   - grants: the partitions processed here with their grants, and those
//     being released; a release waits for the batch in flight.
//   - executor: reads, plans, calls the plugins and commits each owned
//     partition's batches under its grant (batchStore, pluginCaller).
//   - callRouter: runs a Call here (the direct path), forwards it to its
//     owner, or enqueues it and waits (peerCaller, callRunner, callIntake).
//   - jobIntake: validates and enqueues submitted jobs, reads results.
//   - relay: moves emitted jobs from the outboxes, trims dead letters.
//   - scheduler: fires the schedules of the owned partitions, each tick
//     under the partition's grant (scheduleStore).
//   - health: the Consul check, from what the others report.
//
// Worker.Start starts the plugin host, /metrics, the gRPC API and the
// loops; Worker.Stop hands the partitions off and stops them all.
package worker
