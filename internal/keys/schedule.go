package keys

// Schedules maps the names of the schedules that live in the partition
// (the partition of each name) to their definitions.
func (k Partition) Schedules() string { return k.prefix + "sched" }

// ScheduleTicks maps a schedule's name to the last of its ticks its owner
// handled (fired or skipped), written under the partition's grant.
func (k Partition) ScheduleTicks() string { return k.prefix + "schedtick" }

// SchedulesChanged counts changes of any schedule in the cluster, so the
// owners know when to read their schedules again.
const SchedulesChanged = "corral:schedchanged"
