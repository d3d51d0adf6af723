package sharding

import (
	"fmt"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Settle returns the placement that follows prev (partition → member id,
// "" for none) when the membership becomes members. It moves only what it
// must, and evens the shares out exactly:
//
//   - every member ends with ⌊P/N⌋ or ⌈P/N⌉ partitions; the P mod N larger
//     shares go to the members that hold the most already;
//   - a partition keeps its owner while that owner is a member and not over
//     its share, so a join moves the newcomer's share and nothing else, and
//     a leave moves what the leaver held and nothing else;
//   - a member over its share gives up the partitions it prefers least, and
//     each partition left without an owner goes to the member under its
//     share that prefers it most (rendezvous hashing of member and
//     partition), so the result depends on prev and members alone.
//
// With no prev, the first placement is the ring's (NewRing), evened out.
// A prev of fewer partitions whose count divides P (a reshard) gives each
// partition the owner of the partition it split from, then evens out by
// moving new partitions only: an old one stays with the owner splitting it.
func Settle(cfg Config, members, prev []string) ([]string, error) {
	ids, err := checked(cfg, members)
	if err != nil {
		return nil, err
	}
	n, parts := len(ids), cfg.Partitions
	owners := make([]string, parts)
	if n == 0 {
		return owners, nil
	}
	index := make(map[string]int, n)
	for i, id := range ids {
		index[id] = i
	}
	kept := parts // partitions below kept existed before: given up last
	switch {
	case len(prev) == parts:
		copy(owners, prev)
	case len(prev) > 0 && len(prev) < parts && parts%len(prev) == 0:
		for q := range owners {
			owners[q] = prev[q%len(prev)]
		}
		kept = len(prev)
	default:
		r, err := NewRing(cfg, ids)
		if err != nil {
			return nil, err
		}
		copy(owners, r.owners)
	}

	seeds := make([]uint64, n)
	for i, id := range ids {
		seeds[i] = xxhash.Sum64String(id)
	}
	held := make([][]int, n)
	var free []int
	for p, o := range owners {
		if i, ok := index[o]; ok {
			held[i] = append(held[i], p)
		} else {
			owners[p] = ""
			free = append(free, p)
		}
	}

	// Shares: the P mod N members holding the most get one more.
	share, extra := parts/n, parts%n
	byHeld := make([]int, n)
	for i := range byHeld {
		byHeld[i] = i
	}
	slices.SortStableFunc(byHeld, func(a, b int) int { return len(held[b]) - len(held[a]) })
	target := make([]int, n)
	for k, i := range byHeld {
		target[i] = share
		if k < extra {
			target[i]++
		}
	}

	loads := make([]int, n)
	for i, ps := range held {
		if over := len(ps) - target[i]; over > 0 {
			slices.SortFunc(ps, func(a, b int) int {
				if (a < kept) != (b < kept) {
					return b - a // a reshard's new partitions first: their parents are busy splitting
				}
				return cmpScore(prefer(seeds[i], a), prefer(seeds[i], b), a, b)
			})
			for _, p := range ps[:over] {
				owners[p] = ""
				free = append(free, p)
			}
		}
		loads[i] = min(len(ps), target[i])
	}
	slices.Sort(free)
	for _, p := range free {
		best := -1
		var bestScore uint64
		for i := range ids {
			if loads[i] >= target[i] {
				continue
			}
			if s := prefer(seeds[i], p); best < 0 || s > bestScore {
				best, bestScore = i, s
			}
		}
		owners[p] = ids[best]
		loads[best]++
	}
	return owners, nil
}

// prefer is how much the member of seed wants partition p (rendezvous
// hashing: a splitmix64 finalizer of the two).
func prefer(seed uint64, p int) uint64 {
	z := seed ^ (uint64(p)+1)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func cmpScore(sa, sb uint64, a, b int) int {
	switch {
	case sa < sb:
		return -1
	case sa > sb:
		return 1
	}
	return a - b
}

// Placed is the ring of a placement made elsewhere (Settle's): owners
// gives each of cfg.Partitions partitions a member of members or "".
func Placed(cfg Config, members, owners []string) (*Ring, error) {
	ids, err := checked(cfg, members)
	if err != nil {
		return nil, err
	}
	if len(owners) != cfg.Partitions {
		return nil, fmt.Errorf("sharding: a placement of %d partitions, want %d", len(owners), cfg.Partitions)
	}
	for _, o := range owners {
		if _, found := slices.BinarySearch(ids, o); o != "" && !found {
			return nil, fmt.Errorf("sharding: partition owner %q is not a member", o)
		}
	}
	return &Ring{cfg: cfg, members: ids, owners: slices.Clone(owners)}, nil
}
