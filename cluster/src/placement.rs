//! Where a key lives (`cluster.md` §2): its slot (huststore's `x31 % 1024`, one function for the
//! whole house), the group that owns the slot (contiguous ranges), and the nodes that replicate
//! each group with its preferred leader. Pure and deterministic: the same conf gives the same
//! answers on every node, so no randomness, no clock and no hash-map order are used here.
//!
//! It knows nothing of HTTP: callers say which bytes a request hashes through [`Target`].

use std::ops::Range;

use conf::ClusterConf;

/// The number of slots the key space is cut into (huststore's buckets).
pub const SLOTS: u32 = 1024;

/// The index of a node in the conf's `node` lines (`ClusterConf::nodes`), the same on every
/// node since every node reads the same list in the same order.
pub type NodeIndex = usize;

/// What a request is placed by.
///
/// - `Key`: plain KV (`/put`, `/get`, `/get2`, `/exist`, `/del`) and the cache's string paths
///   (`/cache/put`, `/cache/get`, `/cache/exist`, `/cache/del`, `/cache/ttl`, `/cache/expire`,
///   `/cache/persist`, `/cache/append`) hash their `key`; in mq mode (phase 2) a queue hashes
///   its name.
/// - `Table`: hash, set and sorted-set operations (`/h*`, `/s*`, `/z*`) and the cache's hash
///   paths (`/cache/h*`) hash their `tb`, so that a whole table lives in one slot and its
///   listings, `hincrby` and versions stay exact (the spec's decision in §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    Key(&'a [u8]),
    Table(&'a str),
}

/// The slot of a plain key: `storage::bucket` (nginx's `ngx_hash_key`, `h = h * 31 + b`
/// wrapping, then `% 1024`), the very function the single node's listings use.
pub fn slot_of_key(key: &[u8]) -> u32 {
    storage::bucket(key)
}

/// The slot of what a request is placed by (see [`Target`] for which bytes each path hashes).
pub fn slot_of(target: Target<'_>) -> u32 {
    match target {
        Target::Key(key) => slot_of_key(key),
        Target::Table(tb) => slot_of_key(tb.as_bytes()),
    }
}

/// The group of `groups` (1..=1024) that owns `slot` (0..1024): the one `g` with
/// `g*1024/groups <= slot < (g+1)*1024/groups` (integer division), i.e.
/// `ceil((slot+1)*groups/1024) - 1`. Exactly consistent with [`slots_of_group`].
pub fn group_of_slot(slot: u32, groups: u32) -> u32 {
    debug_assert!(slot < SLOTS && (1..=SLOTS).contains(&groups));
    // Out-of-range arguments are the caller's bug; in release they still answer a group in
    // range rather than panic (a peer's number may have come this far unchecked).
    let slot = slot.min(SLOTS - 1);
    let groups = groups.clamp(1, SLOTS);
    ((slot + 1) * groups - 1) / SLOTS
}

/// The slots group `group` of `groups` owns: `[group*1024/groups, (group+1)*1024/groups)`.
/// Every range is non-empty (groups ≤ 1024) and the ranges of `0..groups` tile `0..1024`.
pub fn slots_of_group(group: u32, groups: u32) -> Range<u32> {
    debug_assert!(group < groups && groups <= SLOTS);
    let groups = groups.clamp(1, SLOTS);
    let group = group.min(groups - 1);
    group * SLOTS / groups..(group + 1) * SLOTS / groups
}

/// The first placement of the groups on the nodes (`cluster.md` §2): each group's members and
/// its preferred leader, spread evenly. Every node is a member of `floor` or `ceil` of
/// `groups*replicas/nodes` groups and the preferred leader of `floor` or `ceil` of
/// `groups/nodes` groups.
///
/// The construction: member `k` of group `g` is node `(g + c_k) % N`, where column `k`'s
/// offset is `c_k = (k*r + k/m) % N`, with `r = G % N`, `d = gcd(r, N)` (`N` when `r = 0`)
/// and `m = N/d`. Column 0 (`c_0 = 0`) is the preferred leader, `g % N`: leadership is
/// round-robin. Each column gives every node `floor(G/N)` groups, plus one more to the `r`
/// nodes `[c_k, c_k + r)`; the offsets make those windows tile the ring (`m` windows are
/// exactly `r/d` laps, after which the next lap starts one node further), so the extras are
/// even too. The offsets are distinct, so a group's members are: within a lap of `m` columns
/// `k*r % N` runs over the `m` multiples of `d`, and lap `b < d` adds `b`, a different
/// residue mod `d` (`R ≤ N = m*d`, so at most `d` laps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    nodes: usize,
    /// `members[g]`: group `g`'s replicas, its preferred leader first.
    members: Vec<Vec<NodeIndex>>,
}

impl Placement {
    /// The placement of `groups` groups of `replicas` members on `nodes` nodes. The conf has
    /// checked `1 <= replicas <= nodes` and `1 <= groups <= 1024`; other numbers are a bug
    /// and are clamped into range (with a debug assertion) rather than panic.
    pub fn new(nodes: usize, groups: u32, replicas: usize) -> Placement {
        debug_assert!(nodes >= 1 && (1..=SLOTS).contains(&groups));
        debug_assert!((1..=nodes).contains(&replicas));
        let n = nodes.max(1);
        let g_count = groups.clamp(1, SLOTS) as usize;
        let replicas = replicas.clamp(1, n);
        let r = g_count % n;
        let d = gcd(r, n);
        let m = n / d;
        let offsets: Vec<usize> = (0..replicas).map(|k| (k * r + k / m) % n).collect();
        let members = (0..g_count)
            .map(|g| offsets.iter().map(|c| (g + c) % n).collect())
            .collect();
        Placement { nodes: n, members }
    }

    /// The placement a `cluster { }` block describes.
    pub fn from_conf(conf: &ClusterConf) -> Placement {
        // groups ≤ 1024 once the conf is parsed, so the conversion never saturates.
        let groups = u32::try_from(conf.groups).unwrap_or(SLOTS);
        Placement::new(conf.nodes.len(), groups, conf.replicas)
    }

    /// How many nodes the placement is over.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// How many groups there are.
    pub fn groups(&self) -> u32 {
        // At most 1024 groups (clamped in `new`).
        self.members.len() as u32
    }

    /// Group `group`'s members, its preferred leader first; empty for a group that does not
    /// exist (a number from a peer is checked here, not trusted).
    pub fn members(&self, group: u32) -> &[NodeIndex] {
        self.members
            .get(group as usize)
            .map_or(&[][..], Vec::as_slice)
    }

    /// Group `group`'s preferred leader (its first member); `None` for a group that does not
    /// exist.
    pub fn preferred_leader(&self, group: u32) -> Option<NodeIndex> {
        self.members(group).first().copied()
    }

    /// The node that initializes group `group` at bootstrap (`cluster.md`: "one deterministic
    /// node initializes it"): its preferred leader, so that the first election most likely
    /// elects the node the placement wants and no leadership transfer follows. Every other
    /// member waits to be contacted. `None` for a group that does not exist.
    pub fn initializer(&self, group: u32) -> Option<NodeIndex> {
        self.preferred_leader(group)
    }

    /// Whether `node` replicates group `group`.
    pub fn is_member(&self, group: u32, node: NodeIndex) -> bool {
        self.members(group).contains(&node)
    }

    /// The groups `node` replicates, in increasing order.
    pub fn groups_of_node(&self, node: NodeIndex) -> Vec<u32> {
        (0..self.groups())
            .filter(|&g| self.is_member(g, node))
            .collect()
    }

    /// The group that owns `slot`.
    pub fn group_of_slot(&self, slot: u32) -> u32 {
        group_of_slot(slot, self.groups())
    }

    /// The group of what a request is placed by.
    pub fn group_of(&self, target: Target<'_>) -> u32 {
        self.group_of_slot(slot_of(target))
    }

    /// The slots group `group` owns.
    pub fn slots_of_group(&self, group: u32) -> Range<u32> {
        slots_of_group(group, self.groups())
    }
}

/// Euclid's; `gcd(0, n) = n`.
fn gcd(mut a: usize, mut b: usize) -> usize {
    while a != 0 {
        (a, b) = (b % a, a);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_huststores_buckets() {
        // The values of storage's own test and of the original's x31 hash.
        assert_eq!(slot_of_key(b"a"), 97);
        assert_eq!(slot_of_key(b"ab"), 33);
        assert_eq!(slot_of_key(b"k1"), 294);
        assert_eq!(slot_of_key(b""), 0);
        assert_eq!(slot_of(Target::Key(b"k1")), 294);
        assert_eq!(slot_of(Target::Table("k1")), 294);
        // Bytes as unsigned values: 0xff is 255, not -1.
        assert_eq!(slot_of_key(&[0xff]), 255);
        assert!(slot_of_key(&[0xff; 4096]) < SLOTS);
    }

    #[test]
    fn group_of_slot_and_slots_of_group_agree_for_every_group_count() {
        for groups in 1..=SLOTS {
            let mut next = 0;
            for g in 0..groups {
                let range = slots_of_group(g, groups);
                assert_eq!(range.start, next, "G={groups} g={g}: ranges must tile");
                assert!(!range.is_empty(), "G={groups} g={g}: empty range");
                for slot in range.clone() {
                    assert_eq!(group_of_slot(slot, groups), g, "G={groups} slot={slot}");
                }
                next = range.end;
            }
            assert_eq!(next, SLOTS, "G={groups}: ranges must end at 1024");
        }
    }

    #[test]
    fn slot_ranges_are_the_specs_formula() {
        assert_eq!(slots_of_group(0, 1), 0..1024);
        assert_eq!(slots_of_group(2, 3), 682..1024);
        assert_eq!(slots_of_group(5, 16), 320..384);
        assert_eq!(slots_of_group(1023, 1024), 1023..1024);
        assert_eq!(group_of_slot(1023, 3), 2);
        assert_eq!(group_of_slot(340, 3), 0);
        assert_eq!(group_of_slot(341, 3), 1);
    }

    fn spread(counts: &[usize], total: usize, nodes: usize) -> bool {
        let (lo, hi) = (total / nodes, total.div_ceil(nodes));
        counts.iter().all(|&c| c == lo || c == hi)
    }

    #[test]
    fn placement_spreads_members_and_leaders_evenly() {
        for n in 1..=9usize {
            for g in 1..=64u32 {
                for r in 1..=n {
                    let p = Placement::new(n, g, r);
                    let mut member = vec![0; n];
                    let mut leads = vec![0; n];
                    for group in 0..g {
                        let m = p.members(group);
                        assert_eq!(m.len(), r, "N={n} G={g} R={r} group {group}");
                        let mut sorted = m.to_vec();
                        sorted.sort_unstable();
                        sorted.dedup();
                        assert_eq!(sorted.len(), r, "N={n} G={g} R={r}: repeated member {m:?}");
                        assert!(m.iter().all(|&x| x < n));
                        m.iter().for_each(|&x| member[x] += 1);
                        leads[p.preferred_leader(group).unwrap()] += 1;
                    }
                    let total = g as usize * r;
                    assert!(spread(&member, total, n), "N={n} G={g} R={r}: {member:?}");
                    assert!(
                        spread(&leads, g as usize, n),
                        "N={n} G={g} R={r}: {leads:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn placement_spreads_at_the_limits() {
        for (n, g, r) in [
            (1, 1024, 1),
            (7, 1024, 3),
            (12, 1024, 12),
            (100, 1000, 5),
            (64, 16, 3),
        ] {
            let p = Placement::new(n, g, r);
            let mut member = vec![0; n];
            for group in 0..g {
                p.members(group).iter().for_each(|&x| member[x] += 1);
            }
            assert!(spread(&member, g as usize * r, n), "N={n} G={g} R={r}");
        }
    }

    #[test]
    fn placement_is_deterministic_and_matches_its_conf() {
        assert_eq!(Placement::new(5, 16, 3), Placement::new(5, 16, 3));
        let p = Placement::new(3, 4, 2);
        // r = 1, d = 1, m = 3: offsets 0, 1.
        assert_eq!(p.members(0), [0, 1]);
        assert_eq!(p.members(1), [1, 2]);
        assert_eq!(p.members(2), [2, 0]);
        assert_eq!(p.members(3), [0, 1]);
        // N=4 G=2 R=2: r = 2, offsets 0, 2, so nobody holds both groups.
        let p = Placement::new(4, 2, 2);
        assert_eq!((p.members(0), p.members(1)), (&[0, 2][..], &[1, 3][..]));
        assert_eq!(p.groups_of_node(2), [0]);
        assert_eq!(p.groups_of_node(3), [1]);
    }

    #[test]
    fn the_initializer_is_the_preferred_leader() {
        let p = Placement::new(5, 16, 3);
        for g in 0..16 {
            assert_eq!(p.initializer(g), Some(g as usize % 5));
            assert!(p.is_member(g, p.initializer(g).unwrap()));
        }
        assert_eq!(p.initializer(16), None);
        assert!(p.members(u32::MAX).is_empty());
    }

    #[test]
    fn placement_routes_targets_to_groups() {
        let p = Placement::new(3, 16, 3);
        assert_eq!(p.groups(), 16);
        // slot 294 lies in [256, 320), group 4.
        assert_eq!(p.group_of(Target::Key(b"k1")), 4);
        assert_eq!(p.group_of(Target::Table("k1")), 4);
        assert_eq!(p.slots_of_group(4), 256..320);
        assert_eq!(p.group_of_slot(319), 4);
        assert_eq!(p.group_of_slot(320), 5);
    }

    #[test]
    fn gcd_is_euclids() {
        assert_eq!(gcd(0, 7), 7);
        assert_eq!(gcd(4, 6), 2);
        assert_eq!(gcd(6, 4), 2);
        assert_eq!(gcd(5, 5), 5);
    }
}
