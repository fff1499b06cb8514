//! The order in which garbage is destroyed (PEP 442, as CPython 3.11 does it),
//! on both paths: a cycle found by the collector, and an object whose last
//! handle is dropped.
//!
//! Collector path: every weak reference to the garbage is cleared, then the
//! callbacks of the weak references that are not garbage themselves run
//! (newest first per object), then every finalizer runs once while all of the
//! garbage is intact, then resurrection is detected, then the values are
//! dropped exactly once.
//!
//! Every test runs on its own libtest thread, so each starts with a fresh heap
//! and fresh logs. The `Trace` impls are written by hand so this file does not
//! depend on the derive.

use std::cell::RefCell;

use gencc::{Finalize, Gc, Generation, Trace, Tracer, Weak};

thread_local! {
    /// What happened, in order: callbacks, finalizers, drops, hooks.
    static EVENTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    /// Ids of the `Node`s and `Leaf`s whose value was dropped.
    static DROPS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Ids of the `Node`s whose finalizer ran.
    static FINALIZED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    /// Handles stored by finalizers and `Drop` code.
    static KEPT: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
    /// Plain weak handles that hooks inspect.
    static WATCH: RefCell<Vec<Weak<Node>>> = const { RefCell::new(Vec::new()) };
}

/// Appends to the event log. `try_with`: hooks may run during thread exit.
fn event(e: impl Into<String>) {
    let _ = EVENTS.try_with(|log| log.borrow_mut().push(e.into()));
}

fn events() -> Vec<String> {
    EVENTS.with(|log| log.borrow().clone())
}

fn clear_events() {
    EVENTS.with(|log| log.borrow_mut().clear());
}

fn drops_of(id: u32) -> usize {
    DROPS.with(|d| d.borrow().iter().filter(|&&x| x == id).count())
}

fn finalized_of(id: u32) -> usize {
    FINALIZED.with(|d| d.borrow().iter().filter(|&&x| x == id).count())
}

fn keep(gc: &Gc<Node>) {
    KEPT.with(|k| k.borrow_mut().push(gc.clone()));
}

/// Empties `KEPT`, dropping the handles outside the borrow.
fn take_kept() -> Vec<Gc<Node>> {
    KEPT.with(|k| std::mem::take(&mut *k.borrow_mut()))
}

fn watch(gc: &Gc<Node>) {
    WATCH.with(|w| w.borrow_mut().push(Gc::downgrade(gc)));
}

fn all_watched_dead() -> bool {
    WATCH.with(|w| w.borrow().iter().all(|w| w.upgrade().is_none()))
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

/// A tracked node with a finalizer. Behaviour is configured per node with
/// plain function hooks, so one type serves every test.
struct Node {
    id: u32,
    label: String,
    edges: RefCell<Vec<Gc<Node>>>,
    weak_slot: RefCell<Option<Weak<Node>>>,
    weak_list: RefCell<Vec<Weak<Node>>>,
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
            weak_slot: RefCell::new(None),
            weak_list: RefCell::new(Vec::new()),
            payload: None,
            on_finalize: None,
            on_drop: None,
        }
    }

    fn label(mut self, label: &str) -> Node {
        self.label = label.to_owned();
        self
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

// SAFETY: every field that can own a handle (`edges`, `weak_slot`,
// `weak_list`, `payload`) is owned by the node alone and reported once;
// tracing mutates nothing.
unsafe impl Trace for Node {
    const HAS_FINALIZER: bool = true;

    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.edges.trace(tracer);
        self.weak_slot.trace(tracer);
        self.weak_list.trace(tracer);
        self.payload.trace(tracer);
    }

    fn finalize(this: &Gc<Self>) {
        <Self as Finalize>::finalize(this)
    }
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        let _ = FINALIZED.try_with(|f| f.borrow_mut().push(this.id));
        event(format!("fin {}", this.id));
        if let Some(hook) = this.on_finalize {
            hook(this);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = DROPS.try_with(|d| d.borrow_mut().push(self.id));
        event(format!("drop {}", self.id));
        if let Some(hook) = self.on_drop {
            hook(self);
        }
    }
}

fn link(from: &Gc<Node>, to: &Gc<Node>) {
    from.edges.borrow_mut().push(to.clone());
}

/// Nodes `ids[0] -> ids[1] -> ... -> ids[0]`.
fn ring(ids: &[u32]) -> Vec<Gc<Node>> {
    let nodes: Vec<_> = ids.iter().map(|&id| Node::new(id).gc()).collect();
    for (i, n) in nodes.iter().enumerate() {
        link(n, &nodes[(i + 1) % nodes.len()]);
    }
    nodes
}

fn dead(w: &Weak<Node>) -> &'static str {
    if w.upgrade().is_some() {
        "alive"
    } else {
        "dead"
    }
}

/// The index of the first event equal to `e`.
fn position(log: &[String], e: &str) -> usize {
    log.iter()
        .position(|x| x == e)
        .unwrap_or_else(|| panic!("no event {e:?} in {log:?}"))
}

// --- (a) clearing before calling, callbacks before finalizers ---------------

#[test]
fn every_weak_to_the_garbage_is_dead_inside_every_callback() {
    // CPython's test_bug1055820b: the callback on A must not be able to reach
    // B through a weak reference, nor B's callback A.
    let [a, b]: [Gc<Node>; 2] = ring(&[1, 2]).try_into().ok().unwrap();
    let (wa, wb) = (Gc::downgrade(&a), Gc::downgrade(&b));
    let probe = |name: &'static str| {
        let (wa, wb) = (wa.clone(), wb.clone());
        move |w: &Weak<Node>| {
            event(format!(
                "cb {name}: own {}, a {}, b {}",
                dead(w),
                dead(&wa),
                dead(&wb)
            ))
        }
    };
    let on_a = Gc::downgrade_with(&a, probe("a"));
    let on_b = Gc::downgrade_with(&b, probe("b"));
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    let log = events();
    assert_eq!(log.len(), 6, "{log:?}");
    for e in [
        "cb a: own dead, a dead, b dead",
        "cb b: own dead, a dead, b dead",
    ] {
        assert_eq!(log.iter().filter(|x| *x == e).count(), 1, "{log:?}");
    }
    assert!(on_a.upgrade().is_none() && on_b.upgrade().is_none());
    assert!(wa.upgrade().is_none() && wb.upgrade().is_none());
}

#[test]
fn callbacks_run_before_any_finalizer_and_drops_come_last() {
    let [a, b]: [Gc<Node>; 2] = ring(&[1, 2]).try_into().ok().unwrap();
    let on_a = Gc::downgrade_with(&a, |_| event("cb a"));
    let on_b = Gc::downgrade_with(&b, |_| event("cb b"));
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    let log = events();
    assert_eq!(log.len(), 6, "{log:?}");
    let last_cb = position(&log, "cb a").max(position(&log, "cb b"));
    let first_fin = position(&log, "fin 1").min(position(&log, "fin 2"));
    let last_fin = position(&log, "fin 1").max(position(&log, "fin 2"));
    let first_drop = position(&log, "drop 1").min(position(&log, "drop 2"));
    assert!(last_cb < first_fin, "{log:?}");
    assert!(last_fin < first_drop, "{log:?}");
    drop((on_a, on_b));
}

#[test]
fn several_callbacks_on_one_garbage_object_run_newest_first() {
    let a = Node::new(1).gc();
    link(&a, &a);
    let handles: Vec<_> = (1..=3)
        .map(|i| Gc::downgrade_with(&a, move |_| event(format!("cb{i}"))))
        .collect();
    drop(a);

    assert_eq!(gencc::collect(), 1);
    assert_eq!(events(), ["cb3", "cb2", "cb1", "fin 1", "drop 1"]);
    drop(handles);
}

#[test]
fn callback_whose_handles_were_all_dropped_never_runs() {
    let a = Node::new(1).gc();
    link(&a, &a);
    drop(Gc::downgrade_with(&a, |_| event("dropped alone")));
    let w = Gc::downgrade_with(&a, |_| event("dropped with its clone"));
    let w2 = w.clone();
    drop(w);
    drop(w2);
    let kept = Gc::downgrade_with(&a, |_| event("kept"));
    drop(a);

    assert_eq!(gencc::collect(), 1);
    assert_eq!(events(), ["kept", "fin 1", "drop 1"]);
    drop(kept);
}

#[test]
fn callback_weak_stored_inside_the_garbage_does_not_run() {
    let [a, b]: [Gc<Node>; 2] = ring(&[1, 2]).try_into().ok().unwrap();
    // A holds a callback weak to B, B one to itself: both weak references are
    // garbage too.
    *a.weak_slot.borrow_mut() = Some(Gc::downgrade_with(&b, |_| event("inside, to b")));
    *b.weak_slot.borrow_mut() = Some(Gc::downgrade_with(&b, |_| event("inside, to self")));
    let outside = Gc::downgrade_with(&b, |_| event("outside, to b"));
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    let log = events();
    assert!(log.contains(&"outside, to b".to_owned()), "{log:?}");
    assert!(!log.iter().any(|e| e.starts_with("inside")), "{log:?}");
    drop(outside);
}

#[test]
fn callback_weak_stored_in_a_vec_inside_the_garbage_does_not_run() {
    let [a, b]: [Gc<Node>; 2] = ring(&[1, 2]).try_into().ok().unwrap();
    a.weak_list
        .borrow_mut()
        .push(Gc::downgrade_with(&b, |_| event("inside, in a vec")));
    let outside = Gc::downgrade_with(&b, |_| event("outside"));
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    let log = events();
    assert!(log.contains(&"outside".to_owned()), "{log:?}");
    assert!(!log.contains(&"inside, in a vec".to_owned()), "{log:?}");
    drop(outside);
}

#[test]
fn callback_weak_inside_the_garbage_runs_if_a_clone_lives_outside() {
    let [a, b]: [Gc<Node>; 2] = ring(&[1, 2]).try_into().ok().unwrap();
    let w = Gc::downgrade_with(&b, |_| event("shared"));
    *a.weak_slot.borrow_mut() = Some(w.clone());
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    let log = events();
    assert_eq!(log.iter().filter(|e| *e == "shared").count(), 1, "{log:?}");
    drop(w);
}

// --- (c) finalizers -----------------------------------------------------------

fn read_peer(this: &Gc<Node>) {
    let edges = this.edges.borrow();
    let peer = &edges[0];
    event(format!(
        "{} reads {} (leaf {}), finalized flag {}, weaks dead {}",
        this.label,
        peer.label,
        peer.payload.as_ref().map_or(0, |l| l.0),
        Gc::is_finalized(this),
        all_watched_dead()
    ));
}

#[test]
fn finalizers_run_once_with_the_garbage_intact_and_its_weaks_dead() {
    let a = Node::new(1)
        .label("alpha")
        .payload(101)
        .on_finalize(read_peer)
        .gc();
    let b = Node::new(2)
        .label("beta")
        .payload(102)
        .on_finalize(read_peer)
        .gc();
    link(&a, &b);
    link(&b, &a);
    watch(&a);
    watch(&b);
    drop((a, b));

    assert_eq!(gencc::collect(), 2);
    let log = events();
    for e in [
        "alpha reads beta (leaf 102), finalized flag true, weaks dead true",
        "beta reads alpha (leaf 101), finalized flag true, weaks dead true",
    ] {
        assert_eq!(log.iter().filter(|x| *x == e).count(), 1, "{log:?}");
    }
    for id in [1, 2, 101, 102] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!((finalized_of(1), finalized_of(2)), (1, 1));
    assert_eq!(gencc::collect(), 0);
    assert_eq!((finalized_of(1), finalized_of(2)), (1, 1));
}

// --- (d) resurrection ---------------------------------------------------------

#[test]
fn resurrection_keeps_the_whole_cycle_intact_promoted_and_finalized_once() {
    // Only node 1 resurrects itself; 2 and 3 survive because it reaches them.
    let first = Node::new(1).label("first").on_finalize(keep).gc();
    let (second, third) = (Node::new(2).gc(), Node::new(3).gc());
    link(&first, &second);
    link(&second, &third);
    link(&third, &first);
    let weak_first = Gc::downgrade(&first);
    drop((first, second, third));
    // Unrelated garbage in the same collection.
    drop(ring(&[4, 5]));

    assert_eq!(gencc::collect(), 2, "only the unrelated pair is collected");
    assert_eq!((drops_of(4), drops_of(5)), (1, 1));
    for id in 1..=5 {
        assert_eq!(finalized_of(id), 1, "id {id}");
    }
    for id in 1..=3 {
        assert_eq!(drops_of(id), 0, "id {id}");
    }

    let kept = take_kept();
    assert_eq!(kept.len(), 1);
    let one = &kept[0];
    let two = one.edges.borrow()[0].clone();
    let three = two.edges.borrow()[0].clone();
    assert_eq!((one.id, one.label.as_str()), (1, "first"));
    assert_eq!((two.id, two.label.as_str()), (2, "node2"));
    assert_eq!((three.id, three.label.as_str()), (3, "node3"));
    assert!(Gc::ptr_eq(&three.edges.borrow()[0], one));
    for n in [one, &two, &three] {
        assert_eq!(Gc::generation(n), Some(Generation::Old), "id {}", n.id);
        assert!(Gc::is_finalized(n), "id {}", n.id);
        assert!(Gc::is_tracked(n));
    }
    // The collector's own hold is gone: kept + edge from three; edge + local.
    assert_eq!(Gc::strong_count(one), 2);
    assert_eq!(Gc::strong_count(&two), 2);
    // Weak references to a resurrected object stay cleared (CPython 3.11).
    assert!(weak_first.upgrade().is_none());

    drop((two, three, kept));
    clear_events();
    assert_eq!(gencc::collect(), 3);
    for id in 1..=3 {
        assert_eq!(finalized_of(id), 1, "finalizer of {id} ran again");
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    let log = events();
    assert!(!log.iter().any(|e| e.starts_with("fin")), "{log:?}");
    assert_eq!(gencc::collect(), 0);
}

#[test]
fn resurrected_object_reached_from_a_live_object_survives() {
    thread_local!(static HOLDER: RefCell<Option<Gc<Node>>> = const { RefCell::new(None) });
    fn store_in_holder(this: &Gc<Node>) {
        HOLDER.with(|h| link(h.borrow().as_ref().unwrap(), this));
    }
    let holder = Node::new(10).gc();
    HOLDER.with(|h| *h.borrow_mut() = Some(holder.clone()));
    let a = Node::new(1).on_finalize(store_in_holder).gc();
    link(&a, &a);
    drop(a);

    assert_eq!(gencc::collect(), 0);
    let a = holder.edges.borrow()[0].clone();
    assert_eq!(a.id, 1);
    assert_eq!(Gc::generation(&a), Some(Generation::Old));
    assert_eq!(drops_of(1), 0);

    HOLDER.with(|h| h.borrow_mut().take());
    drop((a, holder));
    assert_eq!(drops_of(10), 1, "the holder dies by reference counting");
    assert_eq!(gencc::collect(), 1);
    assert_eq!((finalized_of(1), drops_of(1)), (1, 1));
}

// --- (e) exactly once, on both paths -------------------------------------------

#[test]
fn every_garbage_value_is_dropped_exactly_once() {
    let nodes: Vec<_> = (1..=6)
        .map(|i| Node::new(i).payload(100 + i).gc())
        .collect();
    for a in &nodes {
        for b in &nodes {
            link(a, b); // complete graph, self-loops included
        }
    }
    // A chain hanging off the clique, and a weak to each node stored inside.
    let tail = Node::new(7).gc();
    link(&nodes[0], &tail);
    link(&tail, &Node::new(8).gc());
    for n in &nodes {
        *n.weak_slot.borrow_mut() = Some(Gc::downgrade(&tail));
    }
    drop((nodes, tail));

    assert_eq!(gencc::collect(), 8);
    for id in (1..=8).chain(101..=106) {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
}

#[test]
fn refcount_death_runs_finalizer_then_callbacks_newest_first_then_drop() {
    let a = Node::new(1).gc();
    let plain = Gc::downgrade(&a);
    let handles: Vec<_> = (1..=3)
        .map(|i| {
            let plain = plain.clone();
            Gc::downgrade_with(&a, move |w| {
                event(format!("cb{i} own {} plain {}", dead(w), dead(&plain)))
            })
        })
        .collect();
    drop(a);

    assert_eq!(
        events(),
        [
            "fin 1",
            "cb3 own dead plain dead",
            "cb2 own dead plain dead",
            "cb1 own dead plain dead",
            "drop 1"
        ]
    );
    assert!(plain.upgrade().is_none());
    assert!(handles.iter().all(|w| w.upgrade().is_none()));
    assert_eq!((finalized_of(1), drops_of(1)), (1, 1));
    drop(handles);
    assert_eq!(gencc::collect(), 0);
    assert_eq!(drops_of(1), 1);
}

#[test]
fn refcount_resurrection_does_not_rerun_the_finalizer() {
    let a = Node::new(1).payload(101).on_finalize(keep).gc();
    let on_a = Gc::downgrade_with(&a, |_| event("cb"));
    drop(a);

    assert_eq!(events(), ["fin 1"]);
    assert_eq!(drops_of(1), 0);
    let kept = take_kept();
    assert_eq!(kept[0].id, 1);
    assert_eq!(kept[0].payload.as_ref().unwrap().0, 101);
    assert!(Gc::is_finalized(&kept[0]));
    assert_eq!(Gc::strong_count(&kept[0]), 1);

    drop(kept);
    assert_eq!(events(), ["fin 1", "cb", "drop 1"]);
    assert_eq!((finalized_of(1), drops_of(1), drops_of(101)), (1, 1, 1));
    assert!(on_a.upgrade().is_none());
    assert_eq!(gencc::collect(), 0);
    assert_eq!(drops_of(1), 1);
}

// --- user code that calls back into the heap during a collection ---------------

#[test]
fn collect_inside_a_finalizer_returns_zero() {
    fn nested(_: &Gc<Node>) {
        event(format!("nested collect {}", gencc::collect()));
        event(format!(
            "nested collect_generation {:?}",
            gencc::collect_generation(0)
        ));
    }
    let a = Node::new(1).on_finalize(nested).gc();
    link(&a, &a);
    // Garbage the nested collection must not touch either.
    drop(ring(&[2, 3]));
    drop(a);

    assert_eq!(gencc::collect(), 3);
    let log = events();
    assert!(log.contains(&"nested collect 0".to_owned()), "{log:?}");
    assert!(
        log.contains(&"nested collect_generation Ok(0)".to_owned()),
        "{log:?}"
    );
    for id in 1..=3 {
        assert_eq!(drops_of(id), 1);
    }
}

#[test]
fn gc_new_inside_finalizer_and_drop_during_a_collection() {
    fn make_in_finalizer(this: &Gc<Node>) {
        let n = Node::new(this.id + 100).payload(this.id + 300).gc();
        // An edge into the garbage, gone again before the finalizer returns.
        link(&n, this);
        n.edges.borrow_mut().clear();
        keep(&n);
    }
    fn make_in_drop(this: &Node) {
        let n = Node::new(this.id + 200).gc();
        link(&n, &n);
        keep(&n);
    }
    let a = Node::new(1)
        .on_finalize(make_in_finalizer)
        .on_drop(make_in_drop)
        .gc();
    link(&a, &a);
    drop(a);

    assert_eq!(gencc::collect(), 1);
    assert_eq!(drops_of(1), 1);
    let kept = take_kept();
    let ids: Vec<u32> = kept.iter().map(|n| n.id).collect();
    assert_eq!(ids, [101, 201]);
    assert_eq!(kept[0].payload.as_ref().unwrap().0, 301);
    for n in &kept {
        assert!(Gc::is_tracked(n));
        assert!(Gc::generation(n).is_some());
        assert!(!Gc::is_finalized(n));
        assert_eq!(drops_of(n.id), 0);
    }
    // Usable: link them into a new cycle and let the collector free them.
    link(&kept[0], &kept[1]);
    link(&kept[1], &kept[0]);
    drop(kept);
    assert_eq!(gencc::collect(), 2);
    for id in [101, 201, 301] {
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!((finalized_of(101), finalized_of(201)), (1, 1));
}

#[test]
fn refcount_resurrection_deep_in_a_cascading_drop() {
    // Past a small depth, destructions are deferred and run from a queue; a
    // finalizer that resurrects its object there must keep the rest of the
    // chain intact, and the later death must not finalize again.
    fn keep_90(this: &Gc<Node>) {
        if this.id == 90 {
            keep(this);
        }
    }
    let len = 150;
    let head = Node::new(0).on_finalize(keep_90).gc();
    let mut tail = head.clone();
    for id in 1..len {
        let next = Node::new(id).on_finalize(keep_90).gc();
        link(&tail, &next);
        tail = next;
    }
    drop(tail);
    drop(head);

    for id in 0..len {
        assert_eq!(finalized_of(id), usize::from(id <= 90), "id {id}");
        assert_eq!(drops_of(id), usize::from(id < 90), "id {id}");
    }
    let kept = take_kept();
    let mut cur = kept[0].clone();
    assert_eq!(cur.id, 90);
    assert_eq!(Gc::strong_count(&cur), 2);
    for id in 91..len {
        let next = cur.edges.borrow()[0].clone();
        assert_eq!(next.id, id);
        cur = next;
    }
    drop(cur);
    drop(kept);
    for id in 0..len {
        assert_eq!(finalized_of(id), 1, "id {id}");
        assert_eq!(drops_of(id), 1, "id {id}");
    }
    assert_eq!(gencc::collect(), 0);
}

#[test]
fn garbage_left_at_thread_exit_is_finalized_and_dropped() {
    use std::sync::{Arc, Mutex};

    type Log = Arc<Mutex<Vec<String>>>;

    struct Reporter {
        id: u32,
        log: Log,
        next: RefCell<Option<Gc<Reporter>>>,
    }

    // SAFETY: `next` is the only field holding a handle, owned and reported
    // once; `log` is shared but holds no handle.
    unsafe impl Trace for Reporter {
        const HAS_FINALIZER: bool = true;
        fn trace(&self, tracer: &mut Tracer<'_>) {
            self.next.trace(tracer);
        }
        fn finalize(this: &Gc<Self>) {
            <Self as Finalize>::finalize(this)
        }
    }

    impl Finalize for Reporter {
        fn finalize(this: &Gc<Self>) {
            this.log.lock().unwrap().push(format!("fin {}", this.id));
        }
    }

    impl Drop for Reporter {
        fn drop(&mut self) {
            self.log.lock().unwrap().push(format!("drop {}", self.id));
        }
    }

    let log: Log = Arc::default();
    let for_thread = log.clone();
    std::thread::spawn(move || {
        let reporter = |id| {
            Gc::new(Reporter {
                id,
                log: for_thread.clone(),
                next: RefCell::new(None),
            })
        };
        let (a, b) = (reporter(1), reporter(2));
        *a.next.borrow_mut() = Some(b.clone());
        *b.next.borrow_mut() = Some(a.clone());
        let cb_log = for_thread.clone();
        // Collection callbacks are not called by the exit collection.
        gencc::register_callback(move |_| cb_log.lock().unwrap().push("callback".into()));
    })
    .join()
    .unwrap();

    let mut seen = log.lock().unwrap().clone();
    seen.sort();
    assert_eq!(seen, ["drop 1", "drop 2", "fin 1", "fin 2"]);
}
