package sharding

import (
	"cmp"
	"math"
	"slices"
)

// maglevPlace is Maglev-style turn taking on the members' lists of
// rankplace_test.go: the members, in the order of their seeds, take turns,
// each claiming the earliest partition of its list not yet claimed, until
// every partition is claimed. Every member ends with ⌊P/N⌋ or ⌈P/N⌉.
func maglevPlace(ids []string, cfg Config, limit int) []int32 {
	n, partitions := len(ids), cfg.Partitions
	lists := make([]memberList, n)
	turn := make([]int, n)
	for i, id := range ids {
		lists[i] = newMemberList(id, partitions)
		turn[i] = i
	}
	slices.SortFunc(turn, func(a, b int) int { return cmp.Compare(lists[a].seed, lists[b].seed) })
	owners := make([]int32, partitions)
	for p := range owners {
		owners[p] = -1
	}
	next := make([]uint64, n)
	for filled := 0; filled < partitions; {
		for _, m := range turn {
			for {
				p := lists[m].perm.at(next[m])
				next[m]++
				if owners[p] < 0 {
					owners[p] = int32(m)
					filled++
					break
				}
			}
			if filled == partitions {
				break
			}
		}
	}
	return owners
}

// ringRankPlacer takes each partition's first choice from an unbounded
// buraksezer/consistent ring (the member of the next virtual node), then
// caps as rankPlace does: a member chosen by more than limit keeps those it
// lists earliest, and the rest spill by the members' lists.
type ringRankPlacer struct{ replicas int }

func (rr ringRankPlacer) place(ids []string, cfg Config, limit int) []int32 {
	n, partitions := len(ids), cfg.Partitions
	first := ringPlacer{replicas: rr.replicas, unbounded: true}.firstChoices(ids, cfg)
	lists := memberLists(ids, partitions)
	owners := make([]int32, partitions)
	preferred := make([][]int32, n)
	for p, m := range first {
		owners[p] = m
		preferred[m] = append(preferred[m], int32(p))
	}
	loads, left := capPreferred(lists, preferred, limit)
	if len(left) > 0 {
		spill(lists, owners, loads, spilledPartitions(left), limit)
	}
	return owners
}

// rankAlpha is rankPlace with its own cap ⌈alpha × P/N⌉ (at most limit,
// at least ⌈P/N⌉).
func rankAlpha(alpha float64) placer {
	return func(ids []string, cfg Config, limit int) []int32 {
		n := len(ids)
		own := max(int(math.Ceil(alpha*float64(cfg.Partitions)/float64(n))), (cfg.Partitions+n-1)/n)
		return rankPlace(ids, cfg, min(limit, own))
	}
}

// rankMargin is rankPlace where a member preferred by more than limit keeps
// the partitions it leads by the widest margin (the runner-up's position
// minus its own) instead of those it lists earliest.
func rankMargin(ids []string, cfg Config, limit int) []int32 {
	n, partitions := len(ids), cfg.Partitions
	lists := memberLists(ids, partitions)
	owners := make([]int32, partitions)
	margin := make([]uint64, partitions)
	preferred := make([][]int32, n)
	for p := range partitions {
		best, second := 0, -1
		for m := 1; m < n; m++ {
			if lists[m].before(&lists[best], p) {
				best, second = m, best
			} else if second < 0 || lists[m].before(&lists[second], p) {
				second = m
			}
		}
		if second >= 0 {
			margin[p] = lists[second].position(p) - lists[best].position(p)
		} else {
			margin[p] = math.MaxUint64
		}
		owners[p] = int32(best)
		preferred[best] = append(preferred[best], int32(p))
	}
	loads := make([]int, n)
	var left []int
	for m, ps := range preferred {
		if len(ps) > limit {
			slices.SortFunc(ps, func(a, b int32) int {
				if c := cmp.Compare(margin[b], margin[a]); c != 0 {
					return c
				}
				return cmp.Compare(lists[m].position(int(a)), lists[m].position(int(b)))
			})
			for _, p := range ps[limit:] {
				left = append(left, int(p))
			}
			ps = ps[:limit]
		}
		loads[m] = len(ps)
	}
	if len(left) > 0 {
		spill(lists, owners, loads, left, limit)
	}
	return owners
}

// rankSpillByLoss is rankPlace whose spilled partitions are placed one at a
// time in a fixed order, latest listed by their first choice first, each on
// the member with room that lists it earliest.
func rankSpillByLoss(ids []string, cfg Config, limit int) []int32 {
	lists := memberLists(ids, cfg.Partitions)
	owners, preferred := firstChoices(lists, cfg.Partitions)
	loads, left := capPreferred(lists, preferred, limit)
	slices.SortFunc(left, func(a, b spilled) int {
		if c := cmp.Compare(b.position, a.position); c != 0 {
			return c
		}
		return cmp.Compare(a.partition, b.partition)
	})
	for _, l := range left {
		best := -1
		for m := range lists {
			if loads[m] < limit && (best < 0 || lists[m].before(&lists[best], l.partition)) {
				best = m
			}
		}
		owners[l.partition] = int32(best)
		loads[best]++
	}
	return owners
}

// firstChoices is each partition's ring owner, as an index into ids.
func (rp ringPlacer) firstChoices(ids []string, cfg Config) []int32 {
	c, index := rp.ring(ids, cfg)
	first := make([]int32, cfg.Partitions)
	for p := range first {
		first[p] = index[c.GetPartitionOwner(p).String()]
	}
	return first
}

// rankQuota walks the positions of the members' lists in step: at position
// k each member, in the order of its seed, claims the partition it lists
// there if that one is unclaimed and the member holds fewer than its quota
// at k: what an average member holds by then, plus slack, at most limit.
// Partitions no member claimed go, earliest listed first, to the member with
// room that lists them earliest.
func rankQuota(slack int) placer {
	return func(ids []string, cfg Config, limit int) []int32 {
		n, partitions := len(ids), cfg.Partitions
		lists := make([]memberList, n)
		order := make([]int, n)
		at := make([][]int32, n) // partition at each position
		for i, id := range ids {
			lists[i] = newMemberList(id, partitions)
			order[i] = i
			at[i] = make([]int32, partitions)
			for p := range partitions {
				at[i][lists[i].position(p)] = int32(p)
			}
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(lists[a].seed, lists[b].seed) })
		owners := make([]int32, partitions)
		for p := range owners {
			owners[p] = -1
		}
		loads := make([]int, n)
		mean := float64(partitions) / float64(n)
		for k := range partitions {
			target := mean * (1 - math.Pow(1-float64(k+1)/float64(partitions), float64(n)))
			quota := min(limit, int(target)+slack)
			for _, m := range order {
				p := at[m][k]
				if owners[p] < 0 && loads[m] < quota {
					owners[p] = int32(m)
					loads[m]++
				}
			}
		}
		var left []int
		for p, o := range owners {
			if o < 0 {
				left = append(left, p)
			}
		}
		if len(left) > 0 {
			spill(lists, owners, loads, left, limit)
		}
		return owners
	}
}

// rankRingSpill is rankPlace whose spilled partitions, earliest listed by
// their first choice first, go to the first member with room in the order
// an unbounded buraksezer/consistent ring gives the partition (its owner,
// then GetClosestNForPartition).
type rankRingSpill struct{ replicas int }

func (rs rankRingSpill) place(ids []string, cfg Config, limit int) []int32 {
	n := len(ids)
	lists := memberLists(ids, cfg.Partitions)
	owners, preferred := firstChoices(lists, cfg.Partitions)
	loads, left := capPreferred(lists, preferred, limit)
	if len(left) == 0 {
		return owners
	}
	slices.SortFunc(left, func(a, b spilled) int {
		if c := cmp.Compare(a.position, b.position); c != 0 {
			return c
		}
		return cmp.Compare(a.partition, b.partition)
	})
	c, index := ringPlacer{replicas: rs.replicas, unbounded: true}.ring(ids, cfg)
	for _, l := range left {
		pref, err := c.GetClosestNForPartition(l.partition, n)
		if err != nil {
			panic(err)
		}
		for _, m := range pref {
			i := index[m.String()]
			if loads[i] < limit {
				owners[l.partition] = i
				loads[i]++
				break
			}
		}
	}
	return owners
}
