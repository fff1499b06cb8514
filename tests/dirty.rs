//! Collections that cannot find garbage skip the search, with unchanged
//! results. A node's `trace` counts its calls, so the tests see whether the
//! passes ran.

use std::cell::{Cell, RefCell};

use gencc::{Gc, Generation, Trace, Tracer};

thread_local! {
    static TRACED: Cell<usize> = const { Cell::new(0) };
    /// When set to `n > 0`, the `n`th trace from now panics.
    static PANIC_AT: Cell<usize> = const { Cell::new(0) };
    /// Whether that trace panics after reporting its edges, not before.
    static PANIC_LATE: Cell<bool> = const { Cell::new(false) };
}

fn traced() -> usize {
    TRACED.with(Cell::get)
}

struct Node {
    children: RefCell<Vec<Gc<Node>>>,
}

// SAFETY: `children` is the only field with handles, owned by the node and
// reported once each; the counter is not part of the graph.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        TRACED.with(|t| t.set(t.get() + 1));
        let late = PANIC_LATE.with(Cell::get);
        if late {
            self.children.trace(tracer);
        }
        match PANIC_AT.with(Cell::get) {
            0 => {}
            1 => {
                PANIC_AT.with(|p| p.set(0));
                panic!("trace failed on purpose");
            }
            n => PANIC_AT.with(|p| p.set(n - 1)),
        }
        if !late {
            self.children.trace(tracer);
        }
    }
}

fn leaf() -> Gc<Node> {
    Gc::new(Node {
        children: RefCell::new(Vec::new()),
    })
}

fn parent(children: Vec<Gc<Node>>) -> Gc<Node> {
    Gc::new(Node {
        children: RefCell::new(children),
    })
}

/// Builds a binary tree by moving each child into its parent: no handle is
/// ever dropped, so no object can have become garbage.
fn tree(depth: u32) -> Gc<Node> {
    if depth == 0 {
        leaf()
    } else {
        parent(vec![tree(depth - 1), tree(depth - 1)])
    }
}

#[test]
fn building_by_moves_runs_collections_without_scanning() {
    let n = if cfg!(miri) { 2_000 } else { 50_000 };
    let before = gencc::stats();
    let mut roots = Vec::new();
    while roots.len() * 63 < n {
        roots.push(tree(5)); // 63 nodes
    }
    let after = gencc::stats();
    assert!(
        after[0].collections > before[0].collections,
        "automatic collections ran"
    );
    assert_eq!(traced(), 0, "but none of them traced an object");
    assert_ne!(
        Gc::generation(&roots[0]),
        Some(Generation::Young),
        "skipped collections still promote"
    );
    drop(roots);
}

#[test]
fn a_lost_reference_makes_the_next_collection_search() {
    let a = leaf();
    let b = parent(vec![a.clone()]);
    a.children.borrow_mut().push(b.clone());
    // Cloned and moved, never dropped: nothing to search for yet.
    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(gencc::collect_generation(1), Ok(0));
    assert_eq!(traced(), 0, "both collections skipped the search");
    drop(b); // 2 -> 1: the cycle may now be garbage
    let t = traced();
    assert_eq!(gencc::collect_generation(0), Ok(0), "it is in generation 2");
    assert_eq!(traced(), t, "generation 0 is clean: skipped");
    assert_eq!(gencc::collect(), 0, "still reachable through `a`");
    assert!(traced() > t, "generation 2 was dirty: searched");
    drop(a);
    assert_eq!(gencc::collect(), 2);
}

#[test]
fn skipped_collections_keep_statistics_and_promotions() {
    let a = leaf();
    let gen0 = gencc::stats()[0].collections;
    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(gencc::stats()[0].collections, gen0 + 1);
    assert_eq!(gencc::count(), [0, 1, 0]);
    assert_eq!(Gc::generation(&a), Some(Generation::Middle));
    assert_eq!(gencc::collect_generation(1), Ok(0));
    assert_eq!(Gc::generation(&a), Some(Generation::Old));
    assert_eq!(gencc::count(), [0, 0, 1]);
    assert_eq!(traced(), 0);
}

#[test]
fn frozen_dirt_is_not_lost_by_unfreezing() {
    let a = leaf();
    let b = parent(vec![a.clone()]);
    a.children.borrow_mut().push(b.clone());
    drop(b); // dirty while in generation 0
    gencc::freeze();
    assert_eq!(gencc::collect(), 0, "frozen objects are not examined");
    gencc::unfreeze();
    drop(a);
    assert_eq!(gencc::collect(), 2, "the dirt moved with the objects");
}

#[test]
fn destroyed_garbage_leaves_no_dirt_behind() {
    let live = tree(3);
    gencc::collect();
    // A two-node cycle: destroying it drops each value's handle to the
    // other, which must not count as a loss in a live generation.
    let a = leaf();
    let b = parent(vec![a.clone()]);
    a.children.borrow_mut().push(b.clone());
    drop((a, b));
    assert_eq!(gencc::collect(), 2);
    let before = traced();
    assert_eq!(gencc::collect(), 0);
    assert_eq!(traced(), before, "a collection searched a clean heap");
    // And a garbage value releasing a live object does count.
    let c = leaf();
    let d = parent(vec![c.clone(), live.clone()]);
    c.children.borrow_mut().push(d.clone());
    drop((c, d));
    assert_eq!(gencc::collect(), 2);
    let before = traced();
    assert_eq!(gencc::collect(), 0);
    assert!(
        traced() > before,
        "the live node that lost a reference was not searched"
    );
    drop(live);
}

#[test]
fn an_unchanged_old_object_in_a_young_cycle_is_found() {
    // At the last collection `old` is clean and in generation 2, and the
    // only reference to it comes from `young`, which is dirty.
    let old = leaf();
    gencc::collect();
    gencc::collect();
    assert_eq!(Gc::generation(&old), Some(Generation::Old));
    let young = parent(vec![old.clone()]);
    old.children.borrow_mut().push(young.clone());
    drop(old); // old loses a reference: dirty
    gencc::collect(); // examined and found alive (through `young`): clean again
    let young_again = parent(vec![young.clone()]);
    drop(young); // young loses a reference: dirty
    assert_eq!(gencc::collect_generation(0), Ok(0));
    drop(young_again); // dies by counting; its edge to `young` goes
    assert_eq!(
        gencc::collect_generation(1),
        Ok(0),
        "the cycle is in generation 2"
    );
    assert_eq!(gencc::collect(), 2);
}

/// A new node that takes over `inner`'s handle, in a cycle with it: `inner`
/// changes owner without losing a reference.
fn owner_of(inner: Gc<Node>) -> Gc<Node> {
    let owner = parent(vec![inner]);
    owner.children.borrow()[0]
        .children
        .borrow_mut()
        .push(owner.clone());
    owner
}

#[test]
fn a_young_object_kept_only_by_an_old_one_stays_suspect() {
    // `old` is clean in generation 2, and its only handle is moved into
    // `young`, so it never loses a reference. `young` loses its outside
    // handle; a young collection then finds it kept, by `old`'s edge from
    // outside the generation. The full collection must still search.
    let old = leaf();
    gencc::collect();
    gencc::collect();
    assert_eq!(Gc::generation(&old), Some(Generation::Old));
    let young = owner_of(old);
    let probe = Gc::downgrade(&young);
    drop(young); // young loses a reference: dirty
    assert_eq!(gencc::collect_generation(0), Ok(0), "kept by generation 2");
    // (No upgrade here: dropping the upgraded handle would make it dirty.)
    assert_eq!(probe.strong_count(), 1);
    assert_eq!(gencc::collect(), 2, "young and old are a garbage cycle");
    assert!(probe.upgrade().is_none());
}

#[test]
fn an_object_kept_only_by_a_frozen_one_stays_suspect() {
    // As above, with a frozen object in place of the old one: even a full
    // collection takes its references for outside ones.
    let frozen = leaf();
    gencc::freeze();
    let young = owner_of(frozen);
    let probe = Gc::downgrade(&young);
    drop(young); // dirty
    assert_eq!(gencc::collect(), 0, "kept by a frozen object");
    gencc::unfreeze();
    assert_eq!(gencc::collect(), 2, "the two are a garbage cycle");
    assert_eq!(probe.strong_count(), 0);
}

/// A heap of `n` live objects in small trees, built by moves and examined
/// once, so that none of them is suspect.
fn settled_heap(n: usize) -> Vec<Gc<Node>> {
    let roots: Vec<_> = (0..n.div_ceil(7)).map(|_| tree(2)).collect();
    gencc::collect();
    roots
}

/// A cycle of `len` nodes whose last outside handle is gone, one of them
/// also holding `extra`; returns a weak reference to that one. The cycle is
/// built by moves, so that it has a single suspect.
fn dropped_ring(len: usize, extra: Option<Gc<Node>>) -> gencc::Weak<Node> {
    let first = leaf();
    let mut chain = first.clone();
    for _ in 1..len {
        chain = parent(vec![chain]);
    }
    first.children.borrow_mut().push(chain);
    first.children.borrow_mut().extend(extra);
    let weak = Gc::downgrade(&first);
    drop(first);
    weak
}

#[test]
fn a_full_collection_examines_only_what_the_suspects_reach() {
    let n = if cfg!(miri) { 1_000 } else { 20_000 };
    let heap = settled_heap(n);
    let weak = dropped_ring(2, Some(heap[0].clone()));
    let before = traced();
    assert_eq!(gencc::collect(), 2);
    assert!(weak.upgrade().is_none());
    // The two garbage nodes and the tree they point into, each traced at
    // most twice (the search, then the marking).
    let seen = traced() - before;
    assert!(
        seen <= 2 * (2 + 7),
        "a full collection with two suspects traced {seen} objects of {n}"
    );
    assert!(heap
        .iter()
        .all(|r| Gc::generation(r) == Some(Generation::Old)));
    assert!(heap.iter().all(gencc::is_tracked));
    // What the search left alone is still collected when it becomes garbage.
    let weak = Gc::downgrade(&heap[1]);
    heap[1].children.borrow_mut().push(heap[1].clone());
    drop(heap);
    assert_eq!(gencc::collect(), 7, "the tree with a self-loop");
    assert!(weak.upgrade().is_none());
}

#[test]
fn a_young_collection_leaves_young_objects_in_use_alone() {
    gencc::disable();
    let young: Vec<_> = (0..500).map(|_| leaf()).collect();
    let weak = dropped_ring(2, Some(young[0].clone()));
    let before = traced();
    assert_eq!(gencc::collect_generation(0), Ok(2));
    assert!(weak.upgrade().is_none());
    let seen = traced() - before;
    assert!(
        seen <= 2 * 3,
        "a young collection with one suspect traced {seen} objects"
    );
    assert!(young
        .iter()
        .all(|n| Gc::generation(n) == Some(Generation::Middle)));
    gencc::enable();
}

#[test]
fn a_search_that_reaches_most_of_the_heap_finds_everything() {
    let n = if cfg!(miri) { 300 } else { 20_000 };
    let heap = settled_heap(n);
    // A ring as large as the heap: the search stops being selective part
    // of the way round.
    let weak = dropped_ring(n, Some(heap[0].clone()));
    assert_eq!(gencc::collect(), n);
    assert!(weak.upgrade().is_none());
    assert!(heap
        .iter()
        .all(|r| Gc::generation(r) == Some(Generation::Old)));
    drop(heap);
    assert_eq!(gencc::collect(), 0, "trees die by reference counting");
}

#[test]
fn a_trace_panic_in_a_full_search_loses_nothing() {
    let n = if cfg!(miri) { 1_000 } else { 5_000 };
    let big = if cfg!(miri) { 100 } else { 2_000 };
    // The first panic strikes while the search is selective, the second
    // after it merged the lists, the third in the marking of a search that
    // stayed selective (two ring nodes and a tree of seven traced, then the
    // third of the tree's nodes marked). Each strikes once before the traced
    // node reported its edges, and once after: the search has then already
    // taken in what they lead to.
    for (ring, panic_at, late) in [
        (big, 2, false),
        (big, big, false),
        (2, 12, false),
        (big, 2, true),
        (big, big, true),
        (2, 12, true),
    ] {
        PANIC_LATE.with(|l| l.set(late));
        let heap = settled_heap(n);
        let young: Vec<_> = (0..50).map(|_| leaf()).collect();
        let weak = dropped_ring(ring, Some(heap[0].clone()));
        let counts: Vec<_> = heap.iter().map(Gc::strong_count).collect();
        PANIC_AT.with(|p| p.set(panic_at));
        let outcome = std::panic::catch_unwind(gencc::collect);
        assert!(outcome.is_err(), "the trace panic reaches the caller");
        assert!(weak.upgrade().is_some(), "nothing was freed");
        assert_eq!(
            heap.iter().map(Gc::strong_count).collect::<Vec<_>>(),
            counts,
            "the search gave back every reference it took"
        );
        assert!(heap.iter().chain(&young).all(gencc::is_tracked));
        assert_eq!(gencc::collect(), ring, "the garbage is found next time");
        assert!(weak.upgrade().is_none());
        drop(young);
        let weak = Gc::downgrade(&heap[0]);
        heap[0].children.borrow_mut().push(heap[0].clone());
        drop(heap);
        assert_eq!(gencc::collect(), 7, "the tree with a self-loop");
        assert!(weak.upgrade().is_none());
    }
    PANIC_LATE.with(|l| l.set(false));
}

/// One step of [`full_collections_free_exactly_the_unreachable`].
#[derive(Clone, Debug)]
enum Step {
    New,
    /// Node `.0` gets a handle to node `.1`.
    Edge(usize, usize),
    /// Node `.0` drops its `.1`th handle.
    Unedge(usize, usize),
    /// The root handle of a node is dropped.
    Unroot(usize),
    /// The root handle of node `.0` is moved into node `.1`.
    MoveRoot(usize, usize),
    /// A collection of generation 0 or 1.
    Young(usize),
    Collect,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(Step::New),
        5 => (0..12usize, 0..12usize).prop_map(|(a, b)| Step::Edge(a, b)),
        1 => (0..12usize, 0..4usize).prop_map(|(a, i)| Step::Unedge(a, i)),
        2 => (0..12usize).prop_map(Step::Unroot),
        2 => (0..12usize, 0..12usize).prop_map(|(a, b)| Step::MoveRoot(a, b)),
        1 => (0..2usize).prop_map(Step::Young),
        1 => Just(Step::Collect),
    ]
}

/// The nodes a reachability model says are alive.
fn reachable(roots: &[Option<Gc<Node>>], edges: &[Vec<usize>]) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut work: Vec<usize> = (0..roots.len()).filter(|&i| roots[i].is_some()).collect();
    while let Some(i) = work.pop() {
        if !std::mem::replace(&mut seen[i], true) {
            work.extend(&edges[i]);
        }
    }
    seen
}

/// Runs `steps` on a graph beside `ballast` live, settled objects, checking
/// every full collection against reachability computed from the model. The
/// ballast decides whether full collections search from the suspects and
/// stay selective (a large one), or give up part of the way (none).
fn run_steps(ballast: usize, steps: &[Step]) {
    let heap = settled_heap(ballast);
    let mut roots: Vec<Option<Gc<Node>>> = Vec::new();
    let mut edges: Vec<Vec<usize>> = Vec::new();
    let mut weaks: Vec<gencc::Weak<Node>> = Vec::new();
    let mut alive: Vec<bool> = Vec::new();
    // A live node, by a strong handle only when it has no root (taking one
    // and dropping it marks the node, which would hide unmarked garbage).
    let with = |roots: &[Option<Gc<Node>>],
                weaks: &[gencc::Weak<Node>],
                i: usize,
                f: &mut dyn FnMut(&Node)| {
        match &roots[i] {
            Some(r) => f(r),
            None => f(&weaks[i].upgrade().expect("a live node")),
        }
    };
    // Deaths by reference counting, which the model learns of through the
    // weak references.
    let deaths =
        |alive: &mut Vec<bool>, edges: &mut Vec<Vec<usize>>, weaks: &[gencc::Weak<Node>]| {
            for i in 0..alive.len() {
                if alive[i] && weaks[i].strong_count() == 0 {
                    alive[i] = false;
                    edges[i].clear();
                }
            }
        };
    let collect = |roots: &[Option<Gc<Node>>],
                   edges: &mut Vec<Vec<usize>>,
                   alive: &mut Vec<bool>,
                   weaks: &[gencc::Weak<Node>]| {
        deaths(alive, edges, weaks);
        let keep = reachable(roots, edges);
        let expected = (0..alive.len()).filter(|&i| alive[i] && !keep[i]).count();
        assert_eq!(gencc::collect(), expected, "collect() against the model");
        for i in 0..alive.len() {
            alive[i] = keep[i];
            assert_eq!(
                weaks[i].strong_count() > 0,
                keep[i],
                "node {i} against the model"
            );
        }
    };
    for s in steps {
        let n = alive.len();
        match *s {
            Step::New => {
                let g = leaf();
                weaks.push(Gc::downgrade(&g));
                roots.push(Some(g));
                edges.push(Vec::new());
                alive.push(true);
            }
            Step::Edge(a, b) if a < n && b < n && alive[a] && alive[b] => {
                let target = match &roots[b] {
                    Some(r) => r.clone(),
                    None => weaks[b].upgrade().expect("a live node"),
                };
                with(&roots, &weaks, a, &mut |node| {
                    node.children.borrow_mut().push(target.clone())
                });
                drop(target);
                edges[a].push(b);
            }
            Step::Unedge(a, i) if a < n && alive[a] && i < edges[a].len() => {
                with(&roots, &weaks, a, &mut |node| {
                    drop(node.children.borrow_mut().remove(i))
                });
                edges[a].remove(i);
            }
            Step::Unroot(a) if a < n => roots[a] = None,
            Step::MoveRoot(a, b) if a < n && b < n && a != b && alive[b] && roots[a].is_some() => {
                let mut handle = roots[a].take();
                with(&roots, &weaks, b, &mut |node| {
                    node.children.borrow_mut().extend(handle.take())
                });
                edges[b].push(a);
            }
            Step::Young(g) => {
                // Not modelled exactly (references from older generations
                // count as outside ones), but it may free only garbage.
                deaths(&mut alive, &mut edges, &weaks);
                let keep = reachable(&roots, &edges);
                let found = gencc::collect_generation(g).expect("a valid generation");
                let freed = (0..alive.len()).filter(|&i| alive[i] && weaks[i].strong_count() == 0);
                assert!(
                    freed.clone().all(|i| !keep[i]),
                    "a young collection freed a reachable node"
                );
                // Garbage it found may release older garbage, which then
                // dies by reference counting, uncounted.
                assert!(found <= freed.count());
            }
            Step::Collect => collect(&roots, &mut edges, &mut alive, &weaks),
            _ => {}
        }
        deaths(&mut alive, &mut edges, &weaks);
    }
    collect(&roots, &mut edges, &mut alive, &weaks);
    roots.clear();
    collect(&roots, &mut edges, &mut alive, &weaks);
    drop(heap);
    assert_eq!(gencc::collect(), 0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    #[test]
    #[cfg_attr(miri, ignore)]
    fn full_collections_free_exactly_the_unreachable(
        ballast in proptest::prop_oneof![proptest::strategy::Just(0usize), proptest::strategy::Just(60), proptest::strategy::Just(1_000)],
        steps in proptest::collection::vec(step(), 1..150),
    ) {
        run_steps(ballast, &steps);
    }
}
