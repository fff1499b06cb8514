//! The workloads W1–W9 of issue 3, each written once, generic over [`Heap`].
//!
//! Every `run` resets the system allocator (`alloc::reset_system_heap`),
//! builds its graph untimed, times exactly the phase the issue names, and
//! ends with one untimed explicit collection so that the next iteration
//! starts from an empty heap.

use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::adapters::Heap;
use crate::alloc;

/// W7: rounds, nodes per round, and the size of the rings of old nodes.
pub const W7_ROUNDS: usize = 200;
pub const W7_PER_ROUND: usize = 1_000;
pub const W7_RING: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// W1: allocate a node and drop it at once, N times.
    Churn,
    /// W1 with an acyclic payload: `Gc<u64>` and the like.
    ChurnLeaf,
    /// W2: clone and drop one handle 10·N times.
    CloneDrop,
    /// W3: drop the root of a binary tree of 2^d − 1 nodes.
    Tree,
    /// W4: N/2 two-node cycles: drop, then collect.
    Pairs,
    /// W5: one ring of N nodes: drop, then collect.
    Ring,
    /// W6: a doubly linked list of N nodes: drop the head, then collect.
    DoublyLinked,
    /// W7: `old` long-lived nodes in small rings, then 200 rounds of 1,000
    /// young nodes in 2-cycles.
    Generational { old: usize },
    /// W8: N nodes with a weak reference each: drop, then upgrade every weak.
    Weak,
    /// W9: drop the head of a singly linked list of `len` nodes (`len` = N).
    Chain { len: usize },
    /// W9 again, at the largest length `Rc` survives (minus a margin).
    ChainAtRcMax { len: usize },
}

impl Workload {
    /// The criterion group name; also the key in the summary and the JSON.
    pub fn group(self) -> String {
        match self {
            Workload::Churn => "W1".into(),
            Workload::ChurnLeaf => "W1u".into(),
            Workload::CloneDrop => "W2".into(),
            Workload::Tree => "W3".into(),
            Workload::Pairs => "W4".into(),
            Workload::Ring => "W5".into(),
            Workload::DoublyLinked => "W6".into(),
            Workload::Generational { old } => format!("W7_L{old}"),
            Workload::Weak => "W8".into(),
            Workload::Chain { len } => format!("W9_len{len}"),
            Workload::ChainAtRcMax { len } => format!("W9_rcmax_len{len}"),
        }
    }

    /// A one-line title for the summary table.
    pub fn title(self, n: usize) -> String {
        match self {
            Workload::Churn => format!("W1 acyclic churn: {n} × (allocate a node, drop it)"),
            Workload::ChurnLeaf => {
                format!("W1u acyclic churn, acyclic payload (Gc<u64> vs Rc<u64>): {n} × (allocate, drop)")
            }
            Workload::CloneDrop => format!("W2 clone/drop: {} × (clone one handle, drop the clone)", 10 * n),
            Workload::Tree => format!("W3 tree: binary tree of {} nodes", self.objects(n)),
            Workload::Pairs => format!("W4 pairs: {} two-node cycles", n / 2),
            Workload::Ring => format!("W5 ring: one ring of {n} nodes"),
            Workload::DoublyLinked => format!("W6 doubly linked list: {n} nodes, strong next and prev"),
            Workload::Generational { old } => format!(
                "W7 generational: L = {old} old nodes in rings of {W7_RING}; {W7_ROUNDS} rounds × {W7_PER_ROUND} young nodes in 2-cycles"
            ),
            Workload::Weak => format!("W8 weak: {n} nodes with one weak reference each"),
            Workload::Chain { len } => format!("W9 deep chain: singly linked list of {len} nodes"),
            Workload::ChainAtRcMax { len } => {
                format!("W9 deep chain at the largest size Rc survives (less 10 %): {len} nodes")
            }
        }
    }

    /// What exactly is timed (printed under each table).
    pub fn timed(self) -> &'static str {
        match self {
            Workload::Churn | Workload::ChurnLeaf => {
                "timed: the whole loop (allocation and drop of every object)"
            }
            Workload::CloneDrop => "timed: the whole loop; ns per clone+drop pair",
            Workload::Tree => "built untimed; timed: dropping the root (every node freed by refcount)",
            Workload::Pairs => {
                "built untimed; timed: dropping the N/2 handles (one per pair), then one explicit collection \
                 (Rc: each pair unlinked by hand in the same loop, no collection)"
            }
            Workload::Ring | Workload::DoublyLinked => {
                "built untimed; timed: dropping the head handle, then one explicit collection \
                 (Rc: the structure unlinked by hand, iteratively, then freed)"
            }
            Workload::Generational { .. } => {
                "old rings built untimed, then one untimed explicit collection; timed: the 200 rounds \
                 (allocate 500 2-cycles into a reused Vec, drop them), automatic collections only \
                 (Rc: each pair unlinked by hand); ns per young object. \"final\" = the one explicit \
                 collection after the rounds, timed separately"
            }
            Workload::Weak => {
                "built untimed (nodes and one weak handle each); timed: dropping the N nodes, then \
                 upgrading every weak handle (all must fail); dropping the weak handles is not timed"
            }
            Workload::Chain { .. } | Workload::ChainAtRcMax { .. } => {
                "built untimed; timed: dropping the head (plain drop for every crate, Rc included)"
            }
        }
    }

    /// The number of objects the timed phase is divided by.
    pub fn objects(self, n: usize) -> u64 {
        match self {
            Workload::Churn | Workload::ChurnLeaf | Workload::Ring | Workload::DoublyLinked => {
                n as u64
            }
            Workload::Weak => n as u64,
            Workload::CloneDrop => 10 * n as u64,
            Workload::Tree => (1u64 << tree_depth(n)) - 1,
            Workload::Pairs => 2 * (n / 2) as u64,
            Workload::Generational { .. } => (W7_ROUNDS * W7_PER_ROUND) as u64,
            Workload::Chain { len } | Workload::ChainAtRcMax { len } => len as u64,
        }
    }

    /// The same shape at a small size (for warming up a child process).
    pub fn small(self) -> (Workload, usize) {
        let w = match self {
            Workload::Generational { old } => Workload::Generational {
                old: old.min(1_000),
            },
            Workload::Chain { len } => Workload::Chain {
                len: len.min(1_000),
            },
            Workload::ChainAtRcMax { len } => Workload::ChainAtRcMax {
                len: len.min(1_000),
            },
            w => w,
        };
        (w, 1_000)
    }
}

/// The depth d of W3's tree: the smallest with 2^d − 1 ≥ n (20 for n = 10^6).
pub fn tree_depth(n: usize) -> u32 {
    (n + 1).next_power_of_two().trailing_zeros().max(1)
}

/// What one run measured.
#[derive(Clone, Copy, Debug, Default)]
pub struct Timing {
    /// The timed phase.
    pub timed: Duration,
    /// W7: the final explicit collection.
    pub extra: Option<Duration>,
    /// Live allocations (counting allocator) left by the timed phase, relative
    /// to before the build: W4–W6 check that the timed collection freed
    /// everything. Only meaningful in the check children.
    pub left_after_timed: alloc::Live,
}

/// The live allocations, read after the crate returned the memory it keeps
/// for reuse; in the check children only (where counting is on), so that
/// timed runs keep their allocator's state.
fn settled<H: Heap>() -> alloc::Live {
    if alloc::enabled() {
        H::release_kept();
    }
    alloc::live()
}

/// Runs workload `w` once for crate `H`. `None`: not applicable (W8 for a
/// crate without weak references).
pub fn run<H: Heap>(w: Workload, n: usize) -> Option<Timing> {
    alloc::reset_system_heap();
    let before = settled::<H>();
    let mut out = Timing::default();
    match w {
        Workload::Churn => {
            let t = Instant::now();
            for i in 0..n as u64 {
                black_box(H::new(i));
            }
            out.timed = t.elapsed();
        }
        Workload::ChurnLeaf => {
            let t = Instant::now();
            for i in 0..n as u64 {
                black_box(H::new_leaf(i));
            }
            out.timed = t.elapsed();
        }
        Workload::CloneDrop => {
            let p = H::new(0);
            let t = Instant::now();
            for _ in 0..10 * n {
                black_box(p.clone());
            }
            out.timed = t.elapsed();
            drop(p);
        }
        Workload::Tree => {
            let mut next_id = 0;
            let root = tree::<H>(tree_depth(n), &mut next_id);
            debug_assert_eq!(H::payload(&root), 0);
            let t = Instant::now();
            drop(root);
            out.timed = t.elapsed();
        }
        Workload::Pairs => {
            let pairs = n / 2;
            let mut roots = Vec::with_capacity(pairs);
            for i in 0..pairs as u64 {
                let a = H::new(2 * i);
                let b = H::new(2 * i + 1);
                H::replace(&a, 0, Some(b.clone()));
                H::replace(&b, 0, Some(a));
                roots.push(b);
            }
            let t = Instant::now();
            for b in roots {
                if !H::COLLECTS {
                    drop(H::replace(&b, 0, None));
                }
                drop(b);
            }
            H::collect();
            out.timed = t.elapsed();
            out.left_after_timed = settled::<H>() - before;
        }
        Workload::Ring => {
            let head = ring::<H>(n, 0);
            let t = Instant::now();
            drop_cyclic::<H>(head);
            H::collect();
            out.timed = t.elapsed();
            out.left_after_timed = settled::<H>() - before;
        }
        Workload::DoublyLinked => {
            let head = H::new(0);
            let mut prev = head.clone();
            for i in 1..n as u64 {
                let node = H::new(i);
                H::replace(&node, 1, Some(prev.clone()));
                H::replace(&prev, 0, Some(node.clone()));
                prev = node;
            }
            drop(prev);
            let t = Instant::now();
            drop_cyclic::<H>(head);
            H::collect();
            out.timed = t.elapsed();
            out.left_after_timed = settled::<H>() - before;
        }
        Workload::Generational { old } => {
            let rings: Vec<H::Ptr> = (0..old / W7_RING)
                .map(|r| ring::<H>(W7_RING, (r * W7_RING) as u64))
                .collect();
            H::collect();
            let mut young = Vec::with_capacity(W7_PER_ROUND / 2);
            let t = Instant::now();
            for _ in 0..W7_ROUNDS {
                for i in 0..(W7_PER_ROUND / 2) as u64 {
                    let a = H::new(2 * i);
                    let b = H::new(2 * i + 1);
                    H::replace(&a, 0, Some(b.clone()));
                    H::replace(&b, 0, Some(a));
                    young.push(b);
                }
                for b in young.drain(..) {
                    if !H::COLLECTS {
                        drop(H::replace(&b, 0, None));
                    }
                    drop(b);
                }
            }
            out.timed = t.elapsed();
            let t = Instant::now();
            H::collect();
            out.extra = Some(t.elapsed());
            for r in rings {
                drop_cyclic::<H>(r);
            }
        }
        Workload::Weak => {
            if !H::HAS_WEAK {
                return None;
            }
            let nodes: Vec<H::Ptr> = (0..n as u64).map(H::new).collect();
            let weaks: Vec<H::Weak> = nodes.iter().map(|p| H::downgrade(p).unwrap()).collect();
            let t = Instant::now();
            drop(nodes);
            let mut alive = 0usize;
            for w in &weaks {
                alive += usize::from(H::upgrade(w).is_some());
            }
            out.timed = t.elapsed();
            assert_eq!(
                alive, 0,
                "a weak reference upgraded after its node was dropped"
            );
            drop(weaks);
        }
        Workload::Chain { len } | Workload::ChainAtRcMax { len } => {
            let mut head = None;
            for i in 0..len as u64 {
                let node = H::new(i);
                H::replace(&node, 0, head.take());
                head = Some(node);
            }
            let t = Instant::now();
            drop(head);
            out.timed = t.elapsed();
        }
    }
    H::collect();
    Some(out)
}

/// A binary tree of `depth` levels, children in edges 0 and 1.
fn tree<H: Heap>(depth: u32, next_id: &mut u64) -> H::Ptr {
    let node = H::new(*next_id);
    *next_id += 1;
    if depth > 1 {
        H::replace(&node, 0, Some(tree::<H>(depth - 1, next_id)));
        H::replace(&node, 1, Some(tree::<H>(depth - 1, next_id)));
    }
    node
}

/// A ring of `len` nodes linked through edge 0; returns a handle to one node.
pub fn ring<H: Heap>(len: usize, first_id: u64) -> H::Ptr {
    let head = H::new(first_id);
    let mut prev = head.clone();
    for i in 1..len as u64 {
        let node = H::new(first_id + i);
        H::replace(&prev, 0, Some(node.clone()));
        prev = node;
    }
    H::replace(&prev, 0, Some(head.clone()));
    head
}

/// Drops the last outside handle to a cyclic structure. With a collector that
/// is all; for `Rc` it first unlinks the structure by hand, walking edge 0 and
/// clearing both edges of every node, so that nothing recurses.
pub fn drop_cyclic<H: Heap>(head: H::Ptr) {
    if H::COLLECTS {
        drop(head);
        return;
    }
    let mut cur = Some(head);
    while let Some(node) = cur {
        drop(H::replace(&node, 1, None));
        cur = H::replace(&node, 0, None);
    }
}
