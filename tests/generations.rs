//! The generational schedule of CPython 3.11, as gencc reproduces it: what
//! `count()[0]` counts, when automatic collections run and which generation
//! they collect (thresholds 700/10/10, the long-lived rule), promotion of
//! survivors, the blind spot of young collections, the permanent generation,
//! the switches that turn automatic collection off, and what `collect`
//! returns.
//!
//! libtest runs every test on a fresh thread and gencc keeps one heap per
//! thread, so each test starts from default thresholds and zero counts.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use gencc::{CallbackId, CollectionInfo, Gc, Generation, Phase, Trace, Tracer};

thread_local! {
    /// How many `Node` values have been dropped on this thread.
    static DROPS: Cell<usize> = const { Cell::new(0) };
}

fn drops() -> usize {
    DROPS.with(Cell::get)
}

/// A tracked object with one optional edge, counting its drops.
struct Node {
    next: RefCell<Option<Gc<Node>>>,
}

// SAFETY: `next` is the only field that can hold a handle; the node owns it
// alone and reports it at most once. Reading goes through `try_borrow`, so
// `trace` mutates nothing (a node being mutated right now is reported as
// having no edge, which only keeps its target alive).
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Ok(next) = self.next.try_borrow() {
            if let Some(next) = &*next {
                next.trace(tracer);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        DROPS.with(|d| d.set(d.get() + 1));
    }
}

fn node() -> Gc<Node> {
    Gc::new(Node {
        next: RefCell::new(None),
    })
}

fn link(from: &Gc<Node>, to: &Gc<Node>) {
    *from.next.borrow_mut() = Some(to.clone());
}

/// Registers a callback that logs every `CollectionInfo` of this thread.
fn record() -> (Rc<RefCell<Vec<CollectionInfo>>>, CallbackId) {
    let log = Rc::new(RefCell::new(Vec::new()));
    let sink = log.clone();
    let id = gencc::register_callback(move |info| sink.borrow_mut().push(*info));
    (log, id)
}

/// The generations of the collections that finished, in order.
fn stopped(log: &RefCell<Vec<CollectionInfo>>) -> Vec<usize> {
    log.borrow()
        .iter()
        .filter(|i| i.phase == Phase::Stop)
        .map(|i| i.generation)
        .collect()
}

// --- count[0] -------------------------------------------------------------

#[test]
fn count0_counts_tracked_allocations_only() {
    assert_eq!(gencc::count(), [0, 0, 0]);

    let numbers: Vec<Gc<u64>> = (0..50).map(Gc::new).collect();
    let strings: Vec<Gc<String>> = (0..50).map(|i| Gc::new(i.to_string())).collect();
    assert_eq!(gencc::count()[0], 0, "untracked allocations must not count");

    let mut nodes: Vec<Gc<Node>> = (0..100).map(|_| node()).collect();
    assert_eq!(gencc::count()[0], 100);

    drop(numbers);
    drop(strings);
    assert_eq!(gencc::count()[0], 100, "untracked frees must not count");

    nodes.truncate(40);
    assert_eq!(gencc::count()[0], 40, "tracked frees take count[0] down");
    // A clone is not an allocation.
    let extra = nodes[0].clone();
    assert_eq!(gencc::count()[0], 40);
    drop(extra);
    drop(nodes);
    assert_eq!(gencc::count()[0], 0);
    assert_eq!(drops(), 100);
}

#[test]
fn count0_is_floored_at_zero() {
    let nodes: Vec<Gc<Node>> = (0..10).map(|_| node()).collect();
    assert_eq!(gencc::count()[0], 10);
    gencc::collect_generation(0).unwrap();
    assert_eq!(gencc::count(), [0, 1, 0]);
    // Ten deallocations with count[0] already at zero.
    drop(nodes);
    assert_eq!(drops(), 10);
    assert_eq!(gencc::count()[0], 0);
    // Not wrapped around, not remembered as a debt.
    let again = node();
    assert_eq!(gencc::count()[0], 1);
    drop(again);
    assert_eq!(gencc::count()[0], 0);
}

// --- Automatic collections ----------------------------------------------

#[test]
fn first_automatic_collection_is_at_the_701st_tracked_allocation() {
    let (log, _id) = record();
    let mut keep = Vec::new();
    for i in 1..=700 {
        keep.push(node());
        // Untracked allocations in between change nothing.
        drop(Gc::new(i as u64));
        assert!(log.borrow().is_empty(), "collection at allocation {i}");
    }
    assert_eq!(gencc::count(), [700, 0, 0]);
    keep.push(node());
    assert_eq!(
        *log.borrow(),
        [
            CollectionInfo {
                phase: Phase::Start,
                generation: 0,
                collected: 0,
                uncollectable: 0
            },
            CollectionInfo {
                phase: Phase::Stop,
                generation: 0,
                collected: 0,
                uncollectable: 0
            },
        ]
    );
    // The collection reset count[0] before the 701st object was linked.
    assert_eq!(gencc::count(), [0, 1, 0]);
    assert_eq!(Gc::generation(&keep[0]), Some(Generation::Middle));
    assert_eq!(Gc::generation(&keep[700]), Some(Generation::Young));
}

#[test]
fn first_automatic_collection_counts_net_allocations() {
    let (log, _id) = record();
    let mut keep: Vec<Gc<Node>> = (0..700).map(|_| node()).collect();
    keep.truncate(600); // 100 tracked frees: count[0] = 600
    assert_eq!(gencc::count()[0], 600);
    for _ in 0..100 {
        keep.push(node());
    }
    assert!(log.borrow().is_empty(), "800 allocations but only 700 net");
    assert_eq!(gencc::count()[0], 700);
    keep.push(node());
    assert_eq!(stopped(&log), [0]);
}

/// Starting from zero counts and never freeing anything, the generations of
/// the automatic collections follow `((0 × 11, 1) × 11, 2)` repeated, one
/// collection every 701 tracked allocations.
#[test]
#[cfg_attr(miri, ignore)] // scale, not memory safety: 10^4-10^5 allocations
fn schedule_of_133_collections() {
    const PERIODS: usize = 2;
    let mut expected = Vec::new();
    for _ in 0..PERIODS {
        for _ in 0..11 {
            expected.extend([0; 11]);
            expected.push(1);
        }
        expected.push(2);
    }
    assert_eq!(expected.len(), 133 * PERIODS);
    // One more period start, to see the schedule begin again.
    expected.push(0);

    // (generation, tracked allocations completed when it started)
    let allocated = Rc::new(Cell::new(0usize));
    let starts = Rc::new(RefCell::new(Vec::new()));
    let (a, s) = (allocated.clone(), starts.clone());
    gencc::register_callback(move |info| {
        if info.phase == Phase::Start {
            s.borrow_mut().push((info.generation, a.get()));
        }
    });

    let mut keep = Vec::new();
    while starts.borrow().len() < expected.len() {
        keep.push(node());
        allocated.set(allocated.get() + 1);
        assert!(keep.len() <= 701 * expected.len(), "too few collections");
    }
    let starts = starts.borrow();
    let gens: Vec<usize> = starts.iter().map(|&(g, _)| g).collect();
    assert_eq!(gens, expected);
    for (k, &(_, at)) in starts.iter().enumerate() {
        // The k-th collection (1-based) runs inside allocation 701 * k.
        assert_eq!(
            at + 1,
            701 * (k + 1),
            "collection {} came late or early",
            k + 1
        );
    }
    assert_eq!(drops(), 0);
}

/// CPython issue #4074: a full collection waits until the objects promoted
/// into generation 2 since the last one make up a quarter of it.
#[test]
#[cfg_attr(miri, ignore)] // scale, not memory safety: 10^4-10^5 allocations
fn long_lived_rule_defers_full_collections() {
    const TOTAL: usize = 20_000;
    // A large generation 2, created without automatic collections.
    gencc::disable();
    let mut keep: Vec<Gc<Node>> = (0..TOTAL).map(|_| node()).collect();
    assert_eq!(gencc::collect(), 0);
    gencc::enable();
    assert_eq!(Gc::generation(&keep[0]), Some(Generation::Old));
    assert_eq!(gencc::count(), [0, 0, 0]);

    // Small thresholds so that count[2] passes threshold 2 quickly: a
    // generation-1 collection every second young one, each promoting about
    // 200 objects, and a full collection due after two of them.
    gencc::set_thresholds(100, 1, 1);

    struct Event {
        generation: usize,
        counts: [usize; 3],
        /// Objects moved into generation 2 since the `collect()` above: every
        /// object allocated before the last generation-1 collection (nothing
        /// here is garbage, and such a collection promotes all young objects).
        pending: usize,
    }
    let allocated = Rc::new(Cell::new(0usize));
    let pending = Rc::new(Cell::new(0usize));
    let events = Rc::new(RefCell::new(Vec::<Event>::new()));
    let (a, p, e) = (allocated.clone(), pending.clone(), events.clone());
    gencc::register_callback(move |info| {
        if info.phase != Phase::Start {
            return;
        }
        e.borrow_mut().push(Event {
            generation: info.generation,
            // Read before the collection updates them: the counts that
            // made the trigger choose this generation.
            counts: gencc::count(),
            pending: p.get(),
        });
        if info.generation == 1 {
            p.set(a.get());
        }
    });

    let mut highest_count2 = 0;
    while !events.borrow().iter().any(|e| e.generation == 2) {
        keep.push(node());
        allocated.set(allocated.get() + 1);
        highest_count2 = highest_count2.max(gencc::count()[2]);
        assert!(allocated.get() < 100_000, "no full collection ever ran");
    }

    let events = events.borrow();
    let (full, before) = events.split_last().unwrap();
    assert_eq!(full.generation, 2);
    assert!(full.counts[2] > 1);
    assert!(
        full.pending >= TOTAL / 4,
        "full collection with only {} pending",
        full.pending
    );
    // Every earlier trigger that found count[2] past its threshold skipped
    // the full collection, and did so only while pending < total / 4.
    let mut skipped = 0;
    for e in before {
        assert_ne!(e.generation, 2);
        if e.counts[2] > 1 {
            skipped += 1;
            assert!(e.pending < TOTAL / 4, "full collection skipped needlessly");
        }
    }
    assert!(
        skipped > 10,
        "only {skipped} triggers skipped the full collection"
    );
    assert!(
        highest_count2 > 10,
        "count[2] only reached {highest_count2} (threshold 1)"
    );
    // The full collection reset count[2].
    assert_eq!(gencc::count()[2], 0);
    assert_eq!(drops(), 0);
}

/// With the default thresholds and a small generation 2 the full collection
/// comes on the regular 133-collection cadence: the rule only defers it while
/// the promoted objects are fewer than a quarter of generation 2.
#[test]
#[cfg_attr(miri, ignore)] // scale, not memory safety: 10^4-10^5 allocations
fn long_lived_rule_does_not_defer_when_enough_is_promoted() {
    gencc::disable();
    let mut keep: Vec<Gc<Node>> = (0..20_000).map(|_| node()).collect();
    gencc::collect();
    gencc::enable();
    let (log, _id) = record();
    while stopped(&log).len() < 133 {
        keep.push(node());
    }
    let gens = stopped(&log);
    assert_eq!(gens[131], 1);
    assert_eq!(gens[132], 2, "8,412 promoted per generation-1 collection");
    assert_eq!(gens.iter().filter(|&&g| g == 2).count(), 1);
}

// --- Promotion -----------------------------------------------------------

#[test]
fn survivors_move_to_the_next_generation() {
    let n = node();
    assert_eq!(Gc::generation(&n), Some(Generation::Young));
    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(Gc::generation(&n), Some(Generation::Middle));
    assert_eq!(&gencc::count()[1..], [1, 0]);
    assert_eq!(gencc::collect_generation(1), Ok(0));
    assert_eq!(Gc::generation(&n), Some(Generation::Old));
    assert_eq!(&gencc::count()[1..], [0, 1]);
    assert_eq!(gencc::collect(), 0);
    assert_eq!(Gc::generation(&n), Some(Generation::Old));
    assert_eq!(gencc::count(), [0, 0, 0]);
    // A young object created now starts in generation 0 again.
    let m = node();
    assert_eq!(Gc::generation(&m), Some(Generation::Young));
    // collect_generation(1) takes generation 0 with it.
    assert_eq!(gencc::collect_generation(1), Ok(0));
    assert_eq!(Gc::generation(&m), Some(Generation::Old));
    assert_eq!(drops(), 0);
}

// --- The generational blind spot ----------------------------------------

/// CPython scenarios G2/G3: references from older generations count as
/// external, so a cycle through generation 2 is found only by a full
/// collection.
#[test]
fn cycle_spanning_generation_2_and_0_needs_a_full_collection() {
    let old = node();
    gencc::collect();
    assert_eq!(Gc::generation(&old), Some(Generation::Old));
    let young = node();
    link(&old, &young);
    link(&young, &old);
    let watch = Gc::downgrade(&young);
    drop((old, young));

    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(drops(), 0);
    {
        let young = watch.upgrade().expect("survived a young collection");
        assert_eq!(Gc::generation(&young), Some(Generation::Middle));
    }
    assert_eq!(gencc::collect_generation(1), Ok(0));
    assert_eq!(drops(), 0);
    assert!(watch.upgrade().is_some());

    assert_eq!(gencc::collect(), 2);
    assert_eq!(drops(), 2);
    assert!(watch.upgrade().is_none());
}

#[test]
fn cycle_spanning_generation_1_and_0_needs_a_generation_1_collection() {
    let middle = node();
    gencc::collect_generation(0).unwrap();
    assert_eq!(Gc::generation(&middle), Some(Generation::Middle));
    let young = node();
    link(&middle, &young);
    link(&young, &middle);
    drop((middle, young));

    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(drops(), 0);
    // Both halves are in generation 1 now.
    assert_eq!(gencc::collect_generation(1), Ok(2));
    assert_eq!(drops(), 2);
}

// --- The permanent generation --------------------------------------------

#[test]
fn frozen_objects_are_never_examined() {
    let x = node();
    let y = node();
    link(&x, &y);
    link(&y, &x);
    let holder = node();
    let keep = node();
    assert_eq!(gencc::count()[0], 4);
    gencc::freeze();
    assert_eq!(gencc::freeze_count(), 4);
    assert_eq!(gencc::count(), [0, 0, 0]);
    assert_eq!(Gc::generation(&keep), Some(Generation::Permanent));
    assert!(Gc::is_tracked(&keep), "frozen objects stay tracked");

    // Frozen garbage is never collected.
    drop((x, y));
    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(gencc::collect(), 0);
    assert_eq!(drops(), 0);

    // A reference from a frozen object is external: a cycle through a
    // frozen object keeps its young half alive.
    let young = node();
    link(&holder, &young);
    link(&young, &holder);
    drop((holder, young));
    assert_eq!(gencc::collect(), 0);
    assert_eq!(drops(), 0);
    assert_eq!(gencc::freeze_count(), 4);

    // Unfreezing moves everything into generation 2, where only a full
    // collection looks.
    gencc::unfreeze();
    assert_eq!(gencc::freeze_count(), 0);
    assert_eq!(Gc::generation(&keep), Some(Generation::Old));
    assert_eq!(gencc::collect_generation(0), Ok(0));
    assert_eq!(gencc::collect_generation(1), Ok(0));
    assert_eq!(drops(), 0);
    assert_eq!(gencc::collect(), 4);
    assert_eq!(drops(), 4);
    assert_eq!(Gc::generation(&keep), Some(Generation::Old));
}

#[test]
fn freeze_count_follows_freeze_unfreeze_and_deaths() {
    assert_eq!(gencc::freeze_count(), 0);
    gencc::collect_generation(1).unwrap();
    gencc::collect_generation(0).unwrap();
    let a: Vec<Gc<Node>> = (0..5).map(|_| node()).collect();
    let _untracked = Gc::new(1u64);
    assert_eq!(gencc::count(), [5, 1, 1]);
    gencc::freeze();
    // As in CPython, freezing resets all three counts.
    assert_eq!(gencc::count(), [0, 0, 0]);
    assert_eq!(gencc::freeze_count(), 5);
    let b: Vec<Gc<Node>> = (0..3).map(|_| node()).collect();
    gencc::freeze();
    assert_eq!(gencc::freeze_count(), 8);
    // A frozen object freed by reference counting leaves the set.
    drop(b);
    assert_eq!(gencc::freeze_count(), 5);
    gencc::unfreeze();
    assert_eq!(gencc::freeze_count(), 0);
    assert!(a.iter().all(|n| Gc::generation(n) == Some(Generation::Old)));
}

// --- Switching automatic collection off ----------------------------------

#[test]
#[cfg_attr(miri, ignore)] // scale, not memory safety: 10^4-10^5 allocations
fn threshold0_zero_disables_automatic_collection() {
    gencc::set_thresholds(0, 10, 10);
    let (log, _id) = record();
    let keep: Vec<Gc<Node>> = (0..10_000).map(|_| node()).collect();
    assert!(log.borrow().is_empty());
    assert_eq!(gencc::count()[0], 10_000);
    assert!(gencc::is_enabled());

    let a = node();
    link(&a, &a);
    drop(a);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(stopped(&log), [2]);
    assert_eq!(drops(), 1);
    drop(keep);
}

#[test]
#[cfg_attr(miri, ignore)] // scale, not memory safety: 10^4-10^5 allocations
fn disable_stops_automatic_collection_but_not_collect() {
    let (log, _id) = record();
    gencc::disable();
    assert!(!gencc::is_enabled());
    let mut keep: Vec<Gc<Node>> = (0..10_000).map(|_| node()).collect();
    assert!(log.borrow().is_empty());
    assert_eq!(gencc::count()[0], 10_000);

    // Enabling again: the next tracked allocation collects at once, since
    // count[0] is far past its threshold.
    gencc::enable();
    drop(Gc::new(0u64));
    assert!(
        log.borrow().is_empty(),
        "untracked allocations never trigger"
    );
    keep.push(node());
    assert_eq!(stopped(&log), [0]);

    gencc::disable();
    let a = node();
    let b = node();
    link(&a, &b);
    link(&b, &a);
    drop((a, b));
    assert_eq!(gencc::collect(), 2);
    assert_eq!(drops(), 2);
    assert_eq!(stopped(&log), [0, 2]);
    assert!(!gencc::is_enabled(), "collect() leaves the switch alone");
}

// --- What collect returns ------------------------------------------------

#[test]
fn collect_returns_the_number_of_unreachable_objects() {
    let a = node();
    let b = node();
    link(&a, &b);
    link(&b, &a);
    drop((a, b));
    assert_eq!(gencc::collect(), 2);
    assert_eq!(drops(), 2);

    let s = node();
    link(&s, &s);
    drop(s);
    assert_eq!(gencc::collect(), 1);
    assert_eq!(drops(), 3);

    // Acyclic garbage dies by reference counting, at once, and the collector
    // never sees it.
    let head = node();
    let tail = node();
    link(&head, &tail);
    drop(tail);
    drop(head);
    assert_eq!(drops(), 5);
    assert_eq!(gencc::collect(), 0);

    // Nothing left: a second collection finds nothing.
    assert_eq!(gencc::collect(), 0);
    assert_eq!(drops(), 5);
}

#[test]
fn young_collections_return_their_garbage_too() {
    let a = node();
    link(&a, &a);
    drop(a);
    assert_eq!(gencc::collect_generation(0), Ok(1));
    let b = node();
    link(&b, &b);
    drop(b);
    assert_eq!(gencc::collect_generation(1), Ok(1));
    assert_eq!(drops(), 2);
}
