//! Collections that cannot find garbage skip the search, with unchanged
//! results. A node's `trace` counts its calls, so the tests see whether the
//! passes ran.

use std::cell::{Cell, RefCell};

use gencc::{Gc, Generation, Trace, Tracer};

thread_local! {
    static TRACED: Cell<usize> = const { Cell::new(0) };
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
        self.children.trace(tracer);
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
