package keys

import (
	"strconv"
	"strings"
	"testing"
)

// partitionKeys are every key of partition p.
func partitionKeys(p int) map[string]string {
	k := For(p)
	return map[string]string{
		"owner": k.Owner(), "epoch": k.Epoch(), "queue": k.Queue(), "outbox": k.Outbox(),
		"dead": k.Dead(), "delayed": k.Delayed(), "parked": k.Parked(), "holds": k.Holds(),
		"waiting": k.Waiting("alice"), "bodies": k.Bodies(), "dead index": k.DeadIndex(),
		"audit": k.Audit(), "job": k.Job("j-1"), "state": k.State("donor", "alice"),
		"relayed": k.Relayed(3, "1-0"), "cancels": k.Cancels(), "finished": k.Finished(),
		"swept": k.Swept(),
	}
}

// hashTag is what Redis Cluster hashes a key by: the text between the
// first { and the next }.
func hashTag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return ""
	}
	tag, _, ok := strings.Cut(rest, "}")
	if !ok {
		return ""
	}
	return tag
}

// TestPartitionKeysShareOneSlot: every key of a partition has the
// partition's hash tag, so one script can touch them all on Redis Cluster,
// and no two roles share a key.
func TestPartitionKeysShareOneSlot(t *testing.T) {
	t.Parallel()
	for _, p := range []int{0, 7, 255} {
		seen := map[string]string{}
		want := "p" + strconv.Itoa(p)
		for role, key := range partitionKeys(p) {
			if tag := hashTag(key); tag != want {
				t.Errorf("partition %d %s key %q has hash tag %q, want %q", p, role, key, tag, want)
			}
			if !strings.HasPrefix(key, "corral:") {
				t.Errorf("partition %d %s key %q is outside the corral: namespace", p, role, key)
			}
			if other, dup := seen[key]; dup {
				t.Errorf("partition %d: %s and %s share key %q", p, role, other, key)
			}
			seen[key] = role
		}
	}
}

// TestKeysOfPartitionsDiffer: no key of one partition is a key of another,
// even where one number is a prefix of the other (1 and 12).
func TestKeysOfPartitionsDiffer(t *testing.T) {
	t.Parallel()
	a, b := partitionKeys(1), partitionKeys(12)
	inA := map[string]bool{}
	for _, k := range a {
		inA[k] = true
	}
	for role, k := range b {
		if inA[k] {
			t.Errorf("%s key %q belongs to partitions 1 and 12", role, k)
		}
	}
}

// TestKeysKeepTheirParts: keys built from user text (an entity key, a job
// id) keep it whole, so two entities or ids never share a key.
func TestKeysKeepTheirParts(t *testing.T) {
	t.Parallel()
	k := For(0)
	if k.Job("a") == k.Job("b") || k.Waiting("a") == k.Waiting("b") || k.State("donor", "a") == k.State("campaign", "a") {
		t.Fatal("different ids, keys or entity types share a key")
	}
}

// TestIDGroupsAndLeases: id reservations are tagged by their group, not by
// a partition; leases are outside every partition.
func TestIDGroupsAndLeases(t *testing.T) {
	t.Parallel()
	if tag := hashTag(IDs(5).Reserved("gift-1")); tag != "i5" {
		t.Errorf("id group 5 key has hash tag %q, want i5", tag)
	}
	if IDs(1).Reserved("x") == IDs(11).Reserved("x") {
		t.Error("id groups 1 and 11 share a key")
	}
	if !strings.HasSuffix(IDs(2).Reserved("gift-1"), "gift-1") {
		t.Errorf("reservation key %q does not end with the id", IDs(2).Reserved("gift-1"))
	}
	if l := Lease("w-1~ab"); hashTag(l) != "" || !strings.Contains(l, "w-1~ab") {
		t.Errorf("lease key %q: want the token, no hash tag", l)
	}
	if hashTag(Meta) != "" {
		t.Errorf("meta key %q has a hash tag", Meta)
	}
}
