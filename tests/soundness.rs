//! Situations where user code could make the collector touch freed or
//! half-destroyed memory: `Drop` code reaching a peer of its own garbage,
//! panics from every kind of user code during a collection, re-entrant
//! collections, and automatic collections triggered while the program holds
//! `RefCell` borrows into the heap.
//!
//! This file also runs under Miri, so the graphs are small. Every test runs on
//! its own libtest thread, so each starts with a fresh heap and fresh logs.
//! The `Trace` impls are written by hand so this file does not depend on the
//! derive.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};

use gencc::{Finalize, Gc, Generation, Phase, Trace, Tracer, Weak};

thread_local! {
    static EVENTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static DROPS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static FINALIZED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    static KEPT: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
    /// While set, every `Node::trace` panics.
    static TRACE_PANICS: Cell<bool> = const { Cell::new(false) };
    /// When above zero, counts `Node::trace` calls down and panics at one.
    static TRACE_PANIC_AT: Cell<usize> = const { Cell::new(0) };
}

fn event(e: impl Into<String>) {
    let _ = EVENTS.try_with(|log| log.borrow_mut().push(e.into()));
}

fn events() -> Vec<String> {
    EVENTS.with(|log| log.borrow().clone())
}

fn drops_of(id: u32) -> usize {
    DROPS.with(|d| d.borrow().iter().filter(|&&x| x == id).count())
}

fn total_drops() -> usize {
    DROPS.with(|d| d.borrow().len())
}

fn finalized_of(id: u32) -> usize {
    FINALIZED.with(|d| d.borrow().iter().filter(|&&x| x == id).count())
}

fn keep(gc: &Gc<Node>) {
    KEPT.with(|k| k.borrow_mut().push(gc.clone()));
}

fn take_kept() -> Vec<Gc<Node>> {
    KEPT.with(|k| std::mem::take(&mut *k.borrow_mut()))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        String::from("<non-string panic>")
    }
}

/// Runs a full collection that must panic; returns the panic message.
fn collect_panicking() -> String {
    match catch_unwind(gencc::collect) {
        Ok(n) => panic!("collect returned {n} instead of panicking"),
        Err(payload) => message(&*payload),
    }
}

fn set_trace_panics(on: bool) {
    TRACE_PANICS.with(|t| t.set(on));
}

/// An untracked value that logs its drop.
struct Leaf(u32);

// SAFETY: holds no handle and reports nothing.
unsafe impl Trace for Leaf {
    const NEEDS_TRACE: bool = false;
    fn trace(&self, _: &mut Tracer<'_>) {}
}

impl Drop for Leaf {
    fn drop(&mut self) {
        let _ = DROPS.try_with(|d| d.borrow_mut().push(self.0));
    }
}

struct Node {
    id: u32,
    label: String,
    edges: RefCell<Vec<Gc<Node>>>,
    payload: Option<Gc<Leaf>>,
    on_finalize: Option<fn(&Gc<Node>)>,
    on_drop: Option<fn(&Node)>,
}

impl Node {
    fn new(id: u32) -> Node {
        Node {
            id,
            label: format!("node{id}"),
            edges: RefCell::new(Vec::new()),
            payload: None,
            on_finalize: None,
            on_drop: None,
        }
    }

    fn payload(mut self, leaf: u32) -> Node {
        self.payload = Some(Gc::new(Leaf(leaf)));
        self
    }

    fn on_finalize(mut self, hook: fn(&Gc<Node>)) -> Node {
        self.on_finalize = Some(hook);
        self
    }

    fn on_drop(mut self, hook: fn(&Node)) -> Node {
        self.on_drop = Some(hook);
        self
    }

    fn gc(self) -> Gc<Node> {
        Gc::new(self)
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.id)
    }
}

// SAFETY: `edges` and `payload` are the only fields holding handles, owned by
// the node and reported once each; tracing mutates nothing (the panic flag is
// only read).
unsafe impl Trace for Node {
    const HAS_FINALIZER: bool = true;

    fn trace(&self, tracer: &mut Tracer<'_>) {
        if TRACE_PANICS.with(Cell::get) {
            panic!("trace panics on demand");
        }
        let at = TRACE_PANIC_AT.with(Cell::get);
        if at > 0 {
            TRACE_PANIC_AT.with(|c| c.set(at - 1));
            if at == 1 {
                panic!("trace panics on demand");
            }
        }
        self.edges.trace(tracer);
        self.payload.trace(tracer);
    }

    fn finalize(this: &Gc<Self>) {
        <Self as Finalize>::finalize(this)
    }
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        let _ = FINALIZED.try_with(|f| f.borrow_mut().push(this.id));
        if let Some(hook) = this.on_finalize {
            hook(this);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Logged before the hook, which may panic.
        let _ = DROPS.try_with(|d| d.borrow_mut().push(self.id));
        if let Some(hook) = self.on_drop {
            hook(self);
        }
    }
}

fn link(from: &Gc<Node>, to: &Gc<Node>) {
    from.edges.borrow_mut().push(to.clone());
}

/// `nodes[0] -> nodes[1] -> ... -> nodes[0]`.
fn close_ring(nodes: &[Gc<Node>]) {
    for (i, n) in nodes.iter().enumerate() {
        link(n, &nodes[(i + 1) % nodes.len()]);
    }
}

fn ring(ids: &[u32]) -> Vec<Gc<Node>> {
    let nodes: Vec<_> = ids.iter().map(|&id| Node::new(id).gc()).collect();
    close_ring(&nodes);
    nodes
}

// --- Drop code reaching into its own garbage -------------------------------------

fn deref_peer(this: &Node) {
    let edges = this.edges.borrow();
    let label = &edges[0].label; // the peer's value is already dropped
    event(format!("read {label}"));
}

#[test]
fn drop_that_dereferences_a_dropped_peer_panics_and_collect_reraises() {
    let nodes = vec![
        Node::new(1).payload(101).on_drop(deref_peer).gc(),
        Node::new(2).payload(102).gc(),
        Node::new(3).payload(103).gc(),
    ];
    close_ring(&nodes);
    drop(nodes);

    let msg = collect_panicking();
    assert!(msg.contains("cycle collector already dropped"), "{msg}");
    assert!(events().is_empty(), "{:?}", events());
    for id in [1, 2, 3, 101, 102, 103] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
    assert_eq!(total_drops(), 6);
}

#[test]
fn try_get_and_debug_of_a_dropped_peer() {
    fn probe_peer(this: &Node) {
        let edges = this.edges.borrow();
        let peer = &edges[0];
        event(format!(
            "try_get none {}, debug {:?}",
            Gc::try_get(peer).is_none(),
            peer
        ));
    }
    let nodes = vec![
        Node::new(1).on_drop(probe_peer).gc(),
        Node::new(2).on_drop(probe_peer).gc(),
    ];
    close_ring(&nodes);
    drop(nodes);

    assert_eq!(gencc::collect(), 2);
    assert_eq!(
        events(),
        [
            "try_get none true, debug Gc(<dropped>)",
            "try_get none true, debug Gc(<dropped>)"
        ]
    );
    assert_eq!((drops_of(1), drops_of(2)), (1, 1));
}

/// Garbage with no user code to run before its values are dropped (no
/// finalizer, no weak callback on the thread) is marked dropped object by
/// object, as the collector comes to it. A `Drop` that reaches a peer then
/// finds it whole, if the peer's turn has not come, or dropped: the first
/// value dropped sees its peer intact, the last sees its peer dropped, and
/// none reads anything else.
#[test]
fn without_user_code_drop_finds_each_peer_whole_or_dropped() {
    struct Probe {
        label: String,
        peer: RefCell<Option<Gc<Probe>>>,
    }
    // SAFETY: `peer` is the only handle, owned and reported once.
    unsafe impl Trace for Probe {
        fn trace(&self, tracer: &mut Tracer<'_>) {
            self.peer.trace(tracer);
        }
    }
    impl Drop for Probe {
        fn drop(&mut self) {
            let peer = self.peer.borrow();
            let peer = peer.as_ref().expect("every probe has a peer");
            let seen = Gc::try_get(peer).map(|p| p.label.clone());
            event(format!("{} saw {seen:?}", self.label));
        }
    }
    // This test's thread never allocates `Node`, whose type has a finalizer.
    let probes: Vec<_> = (0..3)
        .map(|i| {
            Gc::new(Probe {
                label: format!("p{i}"),
                peer: RefCell::new(None),
            })
        })
        .collect();
    for i in 0..3 {
        *probes[i].peer.borrow_mut() = Some(probes[(i + 1) % 3].clone());
    }
    drop(probes);
    assert_eq!(gencc::collect(), 3);
    let log = events();
    assert_eq!(log.len(), 3, "{log:?}");
    for (i, line) in log.iter().enumerate() {
        let me: usize = line[1..2].parse().unwrap();
        let peer = format!("p{}", (me + 1) % 3);
        let whole = format!("p{me} saw Some({peer:?})");
        let dropped = format!("p{me} saw None");
        assert!(*line == whole || *line == dropped, "{line}");
        match i {
            0 => assert_eq!(*line, whole, "nothing is dropped before the first"),
            2 => assert_eq!(*line, dropped, "everything else is dropped before the last"),
            _ => {}
        }
    }
}

#[test]
fn handle_to_a_dropped_peer_stored_by_drop_code_is_inert_and_frees_once() {
    fn store_peer(this: &Node) {
        keep(&this.edges.borrow()[0]);
    }
    let a = Node::new(1).on_drop(store_peer).gc();
    let b = Node::new(2).payload(102).gc();
    link(&a, &b);
    link(&b, &a);
    let weak_b = Gc::downgrade(&b);
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    assert_eq!((drops_of(1), drops_of(2), drops_of(102)), (1, 1, 1));
    let kept = take_kept();
    let b = &kept[0];
    let err = catch_unwind(AssertUnwindSafe(|| b.id)).unwrap_err();
    assert!(message(&*err).contains("cycle collector already dropped"));
    assert!(Gc::try_get(b).is_none());
    assert_eq!(format!("{b:?}"), "Gc(<dropped>)");
    assert!(!Gc::is_tracked(b));
    assert_eq!(Gc::generation(b), None);
    assert_eq!(Gc::strong_count(b), 1);
    assert!(weak_b.upgrade().is_none());
    assert_eq!(weak_b.strong_count(), 0);

    // New handles to the shell are as inert; a callback never runs.
    let again = b.clone();
    assert!(Gc::ptr_eq(&again, b));
    assert!(Gc::downgrade(b).upgrade().is_none());
    let w = Gc::downgrade_with(b, |_| event("callback on a dropped value"));
    assert!(w.upgrade().is_none());
    drop(again);

    // Dropping the last handle frees the memory without dropping the value a
    // second time (Miri checks that nothing leaks).
    drop(kept);
    drop(w);
    assert!(weak_b.upgrade().is_none());
    drop(weak_b);
    assert_eq!((drops_of(1), drops_of(2), drops_of(102)), (1, 1, 1));
    assert!(events().is_empty(), "{:?}", events());
    assert_eq!(gencc::collect(), 0);
}

// --- panics in user code during a collection ----------------------------------

#[test]
fn trace_panic_propagates_and_leaves_the_heap_intact() {
    let live = ring(&[1, 2]);
    let garbage = ring(&[3, 4]);
    let weak_garbage: Vec<Weak<Node>> = garbage.iter().map(Gc::downgrade).collect();
    drop(garbage);
    let counts_before: Vec<usize> = live.iter().map(Gc::strong_count).collect();

    set_trace_panics(true);
    assert_eq!(collect_panicking(), "trace panics on demand");
    set_trace_panics(false);

    assert_eq!(total_drops(), 0);
    assert_eq!(FINALIZED.with(|f| f.borrow().len()), 0);
    let counts_after: Vec<usize> = live.iter().map(Gc::strong_count).collect();
    assert_eq!(counts_before, counts_after);
    assert_eq!(live[0].edges.borrow()[0].label, "node2");
    assert!(Gc::ptr_eq(&live[1].edges.borrow()[0], &live[0]));
    for n in &live {
        assert!(Gc::is_tracked(n));
        assert_eq!(Gc::generation(n), Some(Generation::Old));
    }
    // The garbage is untouched too: its weak references still work.
    for (w, id) in weak_garbage.iter().zip([3, 4]) {
        let n = w.upgrade().expect("garbage freed by a failed collection");
        assert_eq!(n.id, id);
        assert_eq!(Gc::strong_count(&n), 2);
        assert_eq!(Gc::generation(&n), Some(Generation::Old));
    }

    assert_eq!(gencc::collect(), 2);
    assert_eq!((drops_of(3), drops_of(4)), (1, 1));
    assert_eq!((drops_of(1), drops_of(2)), (0, 0));
    assert_eq!(live[1].edges.borrow()[0].label, "node1");
    drop(live);
    assert_eq!(gencc::collect(), 2);
    assert_eq!(total_drops(), 4);
}

#[test]
fn trace_panic_in_a_young_collection_keeps_objects_young() {
    let live = ring(&[1, 2]);
    drop(ring(&[3, 4]));
    set_trace_panics(true);
    let err = catch_unwind(|| gencc::collect_generation(0)).unwrap_err();
    set_trace_panics(false);
    assert_eq!(message(&*err), "trace panics on demand");
    for n in &live {
        assert_eq!(Gc::generation(n), Some(Generation::Young));
    }
    assert_eq!(gencc::collect_generation(0), Ok(2));
    for n in &live {
        assert_eq!(Gc::generation(n), Some(Generation::Middle));
    }
    assert_eq!(total_drops(), 2);
    drop(live);
    assert_eq!(gencc::collect(), 2);
    assert_eq!(total_drops(), 4);
}

#[test]
fn trace_panic_in_the_middle_of_a_large_search_keeps_everything() {
    // A panic a third of the way through the first pass over a heap whose
    // scratch array is mapped from the kernel rather than allocated.
    let n = if cfg!(miri) { 600 } else { 6_000 };
    let ids: Vec<u32> = (1..=n as u32).collect();
    let weak = {
        let nodes = ring(&ids);
        gencc::collect();
        Gc::downgrade(&nodes[0])
    };
    TRACE_PANIC_AT.with(|c| c.set(n / 3));
    assert_eq!(collect_panicking(), "trace panics on demand");
    TRACE_PANIC_AT.with(|c| c.set(0));
    assert_eq!(total_drops(), 0);
    let first = weak
        .upgrade()
        .expect("garbage freed by a failed collection");
    assert_eq!(Gc::generation(&first), Some(Generation::Old));
    assert_eq!(Gc::strong_count(&first), 2);
    drop(first);
    assert_eq!(gencc::collect(), n);
    assert_eq!(total_drops(), n);
}

#[test]
fn trace_panic_while_checking_for_resurrection_keeps_the_garbage() {
    fn arm_trace_panic(_: &Gc<Node>) {
        set_trace_panics(true);
    }
    let nodes = vec![
        Node::new(1).on_finalize(arm_trace_panic).gc(),
        Node::new(2).gc(),
    ];
    close_ring(&nodes);
    drop(nodes);

    assert_eq!(collect_panicking(), "trace panics on demand");
    set_trace_panics(false);
    assert_eq!(total_drops(), 0);
    assert_eq!((finalized_of(1), finalized_of(2)), (1, 1));

    assert_eq!(gencc::collect(), 2);
    assert_eq!((drops_of(1), drops_of(2)), (1, 1));
    assert_eq!((finalized_of(1), finalized_of(2)), (1, 1));
    assert_eq!(gencc::collect(), 0);
}

#[test]
fn panicking_finalizer_does_not_stop_the_others() {
    fn boom(_: &Gc<Node>) {
        panic!("finalizer panics");
    }
    let nodes = vec![
        Node::new(1).gc(),
        Node::new(2).on_finalize(boom).gc(),
        Node::new(3).gc(),
    ];
    close_ring(&nodes);
    drop(nodes);

    assert_eq!(collect_panicking(), "finalizer panics");
    for id in 1..=3 {
        assert_eq!(finalized_of(id), 1, "id {id}");
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
}

#[test]
fn panicking_drop_does_not_stop_the_others() {
    fn boom(_: &Node) {
        panic!("drop panics");
    }
    let nodes = vec![
        Node::new(1).payload(101).gc(),
        Node::new(2).payload(102).on_drop(boom).gc(),
        Node::new(3).payload(103).gc(),
    ];
    close_ring(&nodes);
    drop(nodes);

    assert_eq!(collect_panicking(), "drop panics");
    // Node 2's fields were still dropped while its `Drop` unwound.
    for id in [1, 2, 3, 101, 102, 103] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
    assert_eq!(total_drops(), 6);
}

#[test]
fn panicking_weak_callback_during_a_collection() {
    let nodes = ring(&[1, 2]);
    let panicking = Gc::downgrade_with(&nodes[0], |_| panic!("weak callback panics"));
    let other = Gc::downgrade_with(&nodes[1], |_| event("other callback"));
    drop(nodes);

    assert_eq!(collect_panicking(), "weak callback panics");
    assert_eq!(events(), ["other callback"]);
    for id in 1..=2 {
        assert_eq!(finalized_of(id), 1, "id {id}");
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
    drop((panicking, other));
}

#[test]
fn panicking_collection_callback() {
    let id = gencc::register_callback(|info| {
        if info.phase == Phase::Start {
            panic!("collection callback panics");
        }
    });
    let stops = std::rc::Rc::new(Cell::new(0));
    let s = stops.clone();
    let id2 = gencc::register_callback(move |info| {
        if info.phase == Phase::Stop {
            s.set(info.collected);
        }
    });
    drop(ring(&[1, 2]));

    assert_eq!(collect_panicking(), "collection callback panics");
    assert_eq!((drops_of(1), drops_of(2)), (1, 1));
    assert_eq!(stops.get(), 2, "the later callback still ran, at stop");
    assert!(gencc::unregister_callback(id));
    assert_eq!(gencc::collect(), 0);
    assert!(gencc::unregister_callback(id2));
}

#[test]
fn several_panicking_drops_do_not_stop_the_others() {
    fn boom(_: &Node) {
        panic!("drop panics");
    }
    // Panics first, in the middle, twice in a row and last.
    let panicking = [1, 4, 5, 8];
    let nodes: Vec<_> = (1..=8)
        .map(|id| {
            let n = Node::new(id).payload(100 + id);
            if panicking.contains(&id) {
                n.on_drop(boom).gc()
            } else {
                n.gc()
            }
        })
        .collect();
    close_ring(&nodes);
    drop(nodes);

    assert_eq!(collect_panicking(), "drop panics");
    for id in 1..=8 {
        assert_eq!((drops_of(id), drops_of(100 + id)), (1, 1), "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
    assert_eq!(total_drops(), 16);
}

#[test]
fn the_first_panic_of_a_collection_is_the_one_reraised() {
    fn boom(_: &Gc<Node>) {
        panic!("second");
    }
    let id = gencc::register_callback(|info| {
        if info.phase == Phase::Start {
            panic!("first");
        }
    });
    let a = Node::new(1).on_finalize(boom).gc();
    link(&a, &a);
    drop(a);

    assert_eq!(collect_panicking(), "first");
    assert_eq!((finalized_of(1), drops_of(1)), (1, 1));
    gencc::unregister_callback(id);
}

// --- re-entrancy ---------------------------------------------------------------

#[test]
fn collect_inside_drop_during_a_collection_returns_zero() {
    fn nested(_: &Node) {
        event(format!("nested {}", gencc::collect()));
    }
    let a = Node::new(1).on_drop(nested).gc();
    link(&a, &a);
    drop(a);
    drop(ring(&[2, 3]));

    assert_eq!(gencc::collect(), 3);
    assert_eq!(events(), ["nested 0"]);
    assert_eq!(total_drops(), 3);
}

#[test]
fn gc_new_during_a_collection() {
    fn make(this: &Gc<Node>) {
        let n = Node::new(this.id + 10).payload(this.id + 20).gc();
        link(&n, &n);
        keep(&n);
    }
    fn make_in_drop(this: &Node) {
        keep(&Node::new(this.id + 30).gc());
    }
    let a = Node::new(1).on_finalize(make).on_drop(make_in_drop).gc();
    link(&a, &a);
    drop(a);

    assert_eq!(gencc::collect(), 1);
    let kept = take_kept();
    assert_eq!(kept.iter().map(|n| n.id).collect::<Vec<_>>(), [11, 31]);
    assert_eq!(kept[0].edges.borrow()[0].payload.as_ref().unwrap().0, 21);
    assert!(kept.iter().all(Gc::is_tracked));
    drop(kept);
    assert_eq!(drops_of(31), 1, "no cycle: freed by reference counting");
    assert_eq!(gencc::collect(), 1);
    for id in [1, 11, 21, 31] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
}

// --- automatic collections while the program holds borrows ---------------------

const ALLOCS: u32 = if cfg!(miri) { 12 } else { 300 };

/// A subtree only `parent` holds: `count` children, each with a two-node
/// chain below it whose end points back to the child, and a back edge from
/// every child to `parent`.
fn grow_subtree(parent: &Gc<Node>, first_id: u32, count: u32) -> Vec<u32> {
    let mut ids = Vec::new();
    for i in 0..count {
        let base = first_id + 3 * i;
        let child = Node::new(base).payload(base + 100_000).gc();
        let grand = Node::new(base + 1).gc();
        let great = Node::new(base + 2).gc();
        link(&child, &grand);
        link(&grand, &great);
        link(&great, &child);
        link(&child, parent);
        parent.edges.borrow_mut().push(child);
        ids.extend([base, base + 1, base + 2, base + 100_000]);
    }
    ids
}

/// Checks the shape `grow_subtree` built below `parent`.
fn check_subtree(children: &[Gc<Node>], parent: &Gc<Node>) {
    for child in children {
        let edges = child.edges.borrow();
        let grand = &edges[0];
        assert!(Gc::ptr_eq(&edges[1], parent));
        let great = &grand.edges.borrow()[0];
        assert_eq!((grand.id, great.id), (child.id + 1, child.id + 2));
        assert!(Gc::ptr_eq(&great.edges.borrow()[0], child));
        assert_eq!(child.payload.as_ref().unwrap().0, child.id + 100_000);
    }
}

fn collections() -> usize {
    gencc::stats().iter().map(|s| s.collections).sum()
}

#[test]
fn automatic_collections_while_the_only_holder_is_mutably_borrowed() {
    gencc::set_thresholds(1, 1, 1);
    let root = Node::new(1).gc();
    let node = Node::new(2).gc();
    link(&root, &node);
    link(&node, &root);
    drop(node);
    let mut ids = grow_subtree(&root.edges.borrow()[0], 1000, 3);

    let before = collections();
    {
        let root_edges = root.edges.borrow();
        let node = &root_edges[0]; // no handle of our own: only `root` holds it
        let mut children = node.edges.borrow_mut();
        for i in 0..ALLOCS {
            let id = 10_000 + i;
            let fresh = Node::new(id).payload(id + 100_000).gc();
            link(&fresh, &fresh);
            children.push(fresh);
            ids.extend([id, id + 100_000]);
            // Everything under the borrow is still there after each
            // automatic collection.
            assert_eq!(children.len(), 5 + i as usize);
            check_subtree(&children[1..4], node);
            for (j, c) in children[4..].iter().enumerate() {
                assert_eq!(c.id, 10_000 + j as u32);
            }
            assert_eq!(total_drops(), 0);
        }
    }
    // `count > threshold`, as in CPython: every second tracked allocation.
    assert!(collections() - before >= ALLOCS as usize / 2);
    assert_eq!(total_drops(), 0);
    let node = root.edges.borrow()[0].clone();
    check_subtree(&node.edges.borrow()[1..4], &node);
    drop(node);

    gencc::set_thresholds(700, 10, 10);
    drop(root);
    gencc::collect();
    for id in ids.into_iter().chain([1, 2]) {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
}

#[test]
fn automatic_collections_through_an_immutably_borrowed_garbage_looking_path() {
    gencc::set_thresholds(1, 1, 1);
    // root -> hub -> node -> children -> hub: hub and node are held only by
    // traced edges, so their outside counts are 0 and only the marking from
    // root (through two immutably borrowed cells) keeps them. The test holds
    // a handle to root only; node's cell is mutably borrowed.
    let root = Node::new(1).gc();
    let hub = Node::new(2).gc();
    let node = Node::new(3).gc();
    link(&root, &hub);
    link(&hub, &node);
    drop((hub, node));
    let mut ids = Vec::new();
    {
        let root_edges = root.edges.borrow();
        let hub_edges = root_edges[0].edges.borrow();
        let node = &hub_edges[0];
        ids.extend(grow_subtree(node, 1000, 2));
        let before = collections();
        let mut children = node.edges.borrow_mut();
        for i in 0..ALLOCS {
            let id = 10_000 + i;
            let fresh = Node::new(id).gc();
            link(&fresh, &root_edges[0]); // a back edge to the hub
            children.push(fresh);
            ids.push(id);
            check_subtree(&children[..2], node);
            assert!(Gc::ptr_eq(
                &children[2 + i as usize].edges.borrow()[0],
                &root_edges[0]
            ));
            assert_eq!(total_drops(), 0);
        }
        assert!(collections() - before >= ALLOCS as usize / 2);
        // The hub's cell is only shared: the collector could trace it all along.
        assert_eq!(hub_edges[0].id, 3);
    }
    assert_eq!(total_drops(), 0);
    assert_eq!(
        Gc::generation(&root.edges.borrow()[0]),
        Some(Generation::Old)
    );

    gencc::set_thresholds(700, 10, 10);
    drop(root);
    gencc::collect();
    for id in ids.into_iter().chain(1..=3) {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
}

#[test]
fn automatic_collections_during_a_deep_cascading_drop() {
    // Dropping the head of a long chain defers most destructions (the
    // trashcan); every `Drop` here allocates, so collections run while
    // half-destroyed and deferred objects exist.
    fn allocate(this: &Node) {
        let fresh = Node::new(this.id + 1_000_000).gc();
        link(&fresh, &fresh);
    }
    let len: u32 = if cfg!(miri) { 80 } else { 2_000 };
    gencc::set_thresholds(1, 1, 1);
    let head = Node::new(0).on_drop(allocate).gc();
    let mut tail = head.clone();
    for id in 1..len {
        let next = Node::new(id).on_drop(allocate).gc();
        link(&tail, &next);
        tail = next;
    }
    drop(tail);
    drop(head);
    for id in 0..len {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    gencc::set_thresholds(700, 10, 10);
    gencc::collect();
    for id in 0..len {
        assert_eq!(drops_of(id + 1_000_000), 1, "id {id}");
    }
    assert_eq!(total_drops(), 2 * len as usize);
}

#[test]
fn panicking_finalizer_on_refcount_death_still_destroys_the_object() {
    fn boom(_: &Gc<Node>) {
        panic!("finalizer panics");
    }
    let a = Node::new(1).payload(101).on_finalize(boom).gc();
    let child = Node::new(2).gc();
    link(&a, &child);
    drop(child);
    let weak = Gc::downgrade(&a);
    let err = catch_unwind(AssertUnwindSafe(|| drop(a))).unwrap_err();
    assert_eq!(message(&*err), "finalizer panics");
    assert!(weak.upgrade().is_none());
    for id in [1, 2, 101] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!((finalized_of(1), finalized_of(2)), (1, 1));
    assert_eq!(gencc::collect(), 0);
    assert_eq!(total_drops(), 3);
}

#[test]
fn panic_from_an_automatic_collection_propagates_from_gc_new() {
    thread_local!(static ARMED: Cell<bool> = const { Cell::new(false) });
    let id = gencc::register_callback(|info| {
        if info.phase == Phase::Start && ARMED.with(Cell::get) {
            panic!("automatic collection callback panics");
        }
    });
    gencc::set_thresholds(0, 1, 1); // automatic collection off while building
    drop(ring(&[1, 2]));
    let live = Node::new(3).gc();
    gencc::set_thresholds(1, 1, 1);
    ARMED.with(|a| a.set(true));
    let err = catch_unwind(|| Node::new(4).payload(104).gc()).unwrap_err();
    ARMED.with(|a| a.set(false));

    assert_eq!(message(&*err), "automatic collection callback panics");
    // The value passed to `Gc::new` was dropped, the collection completed.
    assert_eq!((drops_of(4), drops_of(104)), (1, 1));
    assert_eq!((drops_of(1), drops_of(2)), (1, 1));
    assert_eq!(live.id, 3);
    assert_eq!(drops_of(3), 0);
    let after = Node::new(5).gc();
    assert_eq!(after.id, 5);
    gencc::unregister_callback(id);
    gencc::set_thresholds(700, 10, 10);
    drop((live, after));
    assert_eq!(total_drops(), 6);
}

/// A node whose edges live in a `Cell`: the collector reads the cell's value
/// in place while nothing borrows it.
struct CellNode {
    id: u32,
    slot: Cell<Vec<Gc<CellNode>>>,
}

// SAFETY: `slot` is the only field holding handles, owned by the node and
// reported once; tracing mutates nothing.
unsafe impl Trace for CellNode {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.slot.trace(tracer);
    }
}

impl Drop for CellNode {
    fn drop(&mut self) {
        let _ = DROPS.try_with(|d| d.borrow_mut().push(self.id));
        if self.id >= 1_000 {
            return;
        }
        // Allocates while dying: with threshold 1 this collects, while the
        // cell that held this node has just been given a new value.
        let fresh = Gc::new(CellNode {
            id: self.id + 1_000,
            slot: Cell::new(Vec::new()),
        });
        fresh.slot.set(vec![fresh.clone()]);
    }
}

fn cell_node(id: u32, children: Vec<Gc<CellNode>>) -> Gc<CellNode> {
    Gc::new(CellNode {
        id,
        slot: Cell::new(children),
    })
}

#[test]
fn collections_triggered_by_drops_of_values_replaced_in_a_cell() {
    gencc::set_thresholds(1, 1, 1);
    let root = cell_node(1, Vec::new());
    for round in 0..4u32 {
        let base = 10 * (round + 1);
        let grandchild = cell_node(base + 2, Vec::new());
        let child = cell_node(base + 1, vec![grandchild, root.clone()]);
        // The old children die here, by reference counting, and each `Drop`
        // allocates (and so collects).
        let old = root.slot.replace(vec![child]);
        drop(old);
        let now = root.slot.take();
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].id, base + 1);
        let inner = now[0].slot.take();
        assert_eq!(inner[0].id, base + 2);
        assert!(Gc::ptr_eq(&inner[1], &root));
        now[0].slot.set(inner);
        root.slot.set(now);
    }
    for round in 0..3 {
        let base = 10 * (round + 1);
        assert_eq!((drops_of(base + 1), drops_of(base + 2)), (1, 1));
    }
    gencc::set_thresholds(700, 10, 10);
    drop(root);
    gencc::collect();
    for id in [1, 41, 42] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    gencc::collect();
    // Every node made by a `Drop` was a self-cycle, freed by some collection.
    for id in [1, 11, 12, 21, 22, 31, 32, 41, 42] {
        assert_eq!(drops_of(id + 1_000), 1, "id {}", id + 1_000);
    }
    assert_eq!(total_drops(), 18);
    assert_eq!(gencc::collect(), 0);
}
