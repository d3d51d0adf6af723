// Package keys names every Redis key Corral uses.
//
// All keys of one partition share the hash tag {pN}, so each job-path
// script touches a single Redis Cluster slot.
package keys

import "strconv"

// Events is the stream of cluster events (members joined and left,
// partitions moved, breakers opened and closed, plugins restarted and
// reloaded), capped by length. Workers append to it outside the job path.
const Events = "corral:events"

// Meta holds cluster-wide settings fixed at creation (the partition count).
const Meta = "corral:meta"

// Layout holds which worker should own each partition (lease.Layout): a
// hash of its version (v) and its encoding (d).
const Layout = "corral:layout"

// Partition builds the keys of one partition.
type Partition struct{ prefix string }

// For returns the key builder of partition p.
func For(p int) Partition {
	return Partition{prefix: "corral:{p" + strconv.Itoa(p) + "}:"}
}

// Owner holds the lease token of the worker that claimed the partition.
func (k Partition) Owner() string { return k.prefix + "owner" }

// Epoch is the fencing counter, incremented on every grant.
func (k Partition) Epoch() string { return k.prefix + "epoch" }

// Commits counts the commits made under the partition's current grant
// ("grant count"), so a worker can tell when Redis lost one of its own.
func (k Partition) Commits() string { return k.prefix + "commits" }

// Queue is the partition's job stream.
func (k Partition) Queue() string { return k.prefix + "q" }

// Outbox holds jobs emitted by committed jobs, waiting to be relayed.
func (k Partition) Outbox() string { return k.prefix + "out" }

// Dead holds the dead letters: job id → encoded record with its error history.
func (k Partition) Dead() string { return k.prefix + "dlq" }

// Delayed is the sorted set of delayed jobs (score: due unix ms), released
// into the queue by the owner when due.
func (k Partition) Delayed() string { return k.prefix + "delayed" }

// Parked is the sorted set of jobs holding their key while they wait for
// a retry (score: not-before unix ms); at most one per key.
func (k Partition) Parked() string { return k.prefix + "parked" }

// Holds maps a held key to the parked job that holds it.
func (k Partition) Holds() string { return k.prefix + "holds" }

// Waiting lists, in order, the ids of jobs of key waiting behind its hold.
func (k Partition) Waiting(key string) string { return k.prefix + "wait:" + key }

// Bodies holds the encoded jobs that are delayed, parked or waiting.
func (k Partition) Bodies() string { return k.prefix + "bodies" }

// DeadIndex orders the dead letters by the time they died.
func (k Partition) DeadIndex() string { return k.prefix + "dlqidx" }

// Audit records (epoch, job id) of every commit when auditing is on.
func (k Partition) Audit() string { return k.prefix + "audit" }

// Job is the idempotency record of a job id: content hash and status.
func (k Partition) Job(id string) string { return k.prefix + "job:" + id }

// State holds an entity's committed state. The commit script builds the
// names of State and Entities from a partition's prefix too, to drop
// expired keys from the index (store's commit layout, section "state").
func (k Partition) State(entity, key string) string {
	return k.prefix + "st:" + entity + ":" + key
}

// Entities indexes the keys of entity type entity that have state in the
// partition: a sorted set whose members all score 0, so it pages in key
// order (ZRANGEBYLEX) and a key present for a whole listing is listed once.
func (k Partition) Entities(entity string) string { return k.prefix + "ents:" + entity }

// Expiring orders the states written with a time to live by when they
// expire (score: unix ms; member: entity type, NUL, key), so commits can
// drop expired keys from their entity's index.
func (k Partition) Expiring() string { return k.prefix + "stexp" }

// Broadcast records that member ran (or is running) broadcast id, so the
// id runs there once however often it is sent.
func Broadcast(member, id string) string { return "corral:bc:" + member + ":" + id }

// Lease is a worker's liveness lease, named by its token.
func Lease(token string) string { return "corral:lease:" + token }

// Relayed marks outbox entry entry of partition src as relayed to this
// partition, so relaying it again adds nothing.
func (k Partition) Relayed(src int, entry string) string {
	return k.prefix + "relayed:" + strconv.Itoa(src) + ":" + entry
}

// IDGroup builds the keys that reserve job ids across the cluster. An id
// does not name its job's key, so its reservation is grouped by a hash of
// the id itself, under the hash tag {iN}: the ids of one submission take
// one script call per group.
type IDGroup struct{ prefix string }

// IDGroups is how many groups the reservations of job ids are spread
// over. Few groups keep a submission's reservations to a few script calls
// (each call's fixed cost is most of a small one's); eight still spread
// them over up to eight Redis Cluster nodes.
const IDGroups = 8

// IDs returns the key builder of id group g.
func IDs(g int) IDGroup {
	return IDGroup{prefix: "corral:{i" + strconv.Itoa(g) + "}:id:"}
}

// Reserved holds the content hash of the one job the id names.
func (g IDGroup) Reserved(id string) string { return g.prefix + id }

// Cancels holds the cancels asked for jobs of the partition (score: when
// asked, unix ms), until the owner applies them in a commit.
func (k Partition) Cancels() string { return k.prefix + "cancel" }

// Finished logs the jobs each commit finished, one entry per commit (see
// store's finished log), kept as long as their records, and swept.
func (k Partition) Finished() string { return k.prefix + "fin" }

// Swept is the id of the last finished log entry whose records the sweep
// of the done retention has dropped (see store's sweep).
func (k Partition) Swept() string { return k.prefix + "swept" }

// Topic is the partition's stream of the messages its committed jobs
// published to topic: a topic has one stream per partition, so a commit
// appends to it in its own slot, and a subscriber reads all of them.
func (k Partition) Topic(topic string) string { return k.prefix + "topic:" + topic }

// Watched holds the entity states someone watches (coordinator watch
// --entity): member the state's key, score when the watch lapses (unix
// ms) unless renewed. A commit publishes a state only while it is
// watched.
func (k Partition) Watched() string { return k.prefix + "watched" }

// Consumer is where handler's subscription to topic is in the topic's
// streams: partition → last message id made a job, and "from", the unix ms
// it started at. It lives in the partition PartitionOf("t~TOPIC~HANDLER"),
// whose owner consumes it.
func (k Partition) Consumer(handler, topic string) string {
	return k.prefix + "consumer:" + handler + ":" + topic
}

// EntityTypes names every entity type that has ever had state: a worker
// adds a type before its first commit that writes one, so a partition's
// split (coordinator reshard) finds every index to move.
const EntityTypes = "corral:etypes"

// Split marks a partition being split by a reshard: "f<N>" while frozen,
// "d<N>" once split to N partitions (see internal/routing).
func (k Partition) Split() string { return k.prefix + "split" }

// Import is a child partition's import token during its parent's split:
// the grant of the splitter allowed to copy into it, or "done".
func (k Partition) Import() string { return k.prefix + "import" }
