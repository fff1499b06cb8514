//! The final collection a thread's heap runs when the thread exits.
//!
//! Nodes count their drops in an `Arc<AtomicUsize>` that the spawning thread
//! reads after `join`, which returns only once the exiting thread's
//! thread-local destructors, and so its final collection, have run.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;

use gencc::{Gc, Trace, Tracer, Weak};

struct Node {
    next: RefCell<Option<Gc<Node>>>,
    /// Shared with the test thread; holds no handle, so it is not traced.
    drops: Arc<AtomicUsize>,
}

// SAFETY: `next` is the only field that can hold a handle; the node owns it
// alone and reports it at most once, reading with `try_borrow` so that
// `trace` mutates nothing. `drops` holds no handle and is skipped.
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
        self.drops.fetch_add(1, SeqCst);
    }
}

fn node(drops: &Arc<AtomicUsize>) -> Gc<Node> {
    Gc::new(Node {
        next: RefCell::new(None),
        drops: drops.clone(),
    })
}

fn link(from: &Gc<Node>, to: &Gc<Node>) {
    *from.next.borrow_mut() = Some(to.clone());
}

/// Drops a fresh ring of `len` nodes: garbage only a collection can free.
fn garbage_ring(drops: &Arc<AtomicUsize>, len: usize) {
    let nodes: Vec<Gc<Node>> = (0..len).map(|_| node(drops)).collect();
    for i in 0..len {
        link(&nodes[i], &nodes[(i + 1) % len]);
    }
}

#[test]
fn exiting_thread_collects_its_garbage_cycles() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    thread::spawn(move || {
        garbage_ring(&d, 1);
        garbage_ring(&d, 2);
        garbage_ring(&d, 10);
        // Also garbage in the oldest generation: a cycle that lived through
        // two collections, then was dropped.
        let old = node(&d);
        let peer = node(&d);
        link(&old, &peer);
        link(&peer, &old);
        drop(peer);
        gencc::collect_generation(0).unwrap();
        gencc::collect_generation(1).unwrap();
        assert_eq!(Gc::generation(&old), Some(gencc::Generation::Old));
        drop(old);
        // Far fewer than 700 allocations: no automatic collection ran, and
        // the two explicit ones found the garbage made before them.
        assert_eq!(gencc::stats()[0].collected, 1 + 2 + 10);
        assert_eq!(d.load(SeqCst), 13);
        garbage_ring(&d, 1);
        garbage_ring(&d, 7);
        assert_eq!(d.load(SeqCst), 13, "the rest is cyclic garbage");
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(SeqCst), 13 + 2 + 1 + 7);
}

#[test]
fn exiting_thread_collects_garbage_with_automatic_collection_disabled() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    thread::spawn(move || {
        gencc::disable();
        gencc::set_thresholds(0, 0, 0);
        for _ in 0..1000 {
            garbage_ring(&d, 2);
        }
        assert_eq!(d.load(SeqCst), 0);
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(SeqCst), 2000);
}

#[test]
fn exit_collection_calls_no_collection_callback() {
    let drops = Arc::new(AtomicUsize::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (d, c) = (drops.clone(), calls.clone());
    thread::spawn(move || {
        gencc::register_callback(move |_| {
            c.fetch_add(1, SeqCst);
        });
        garbage_ring(&d, 2);
    })
    .join()
    .unwrap();
    assert_eq!(drops.load(SeqCst), 2, "the final collection ran");
    assert_eq!(calls.load(SeqCst), 0, "without callbacks, as in CPython");
}

thread_local! {
    /// Handles kept until the thread's own thread-locals are destroyed, in
    /// an order relative to gencc's exit guard that the test cannot choose.
    static KEPT: RefCell<Vec<Weak<Node>>> = const { RefCell::new(Vec::new()) };
    static KEPT_STRONG: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
}

#[test]
fn exiting_with_a_live_weak_callback_registration_does_not_crash() {
    let drops = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let (d, f) = (drops.clone(), fired.clone());
    thread::spawn(move || {
        // A registration on a garbage cycle, its weak handle alive in a
        // thread-local.
        let a = node(&d);
        let b = node(&d);
        link(&a, &b);
        link(&b, &a);
        let f1 = f.clone();
        let w = Gc::downgrade_with(&a, move |w| {
            assert!(w.upgrade().is_none());
            f1.fetch_add(1, SeqCst);
        });
        KEPT.with(|k| k.borrow_mut().push(w));
        drop((a, b));

        // A registration on a live object, both kept in thread-locals.
        let live = node(&d);
        let f2 = f.clone();
        let w = Gc::downgrade_with(&live, move |_| {
            f2.fetch_add(1, SeqCst);
        });
        KEPT.with(|k| k.borrow_mut().push(w));
        KEPT_STRONG.with(|k| k.borrow_mut().push(live));

        // And one whose weak handle is a local, dropped before the exit.
        let c = node(&d);
        link(&c, &c);
        let local = Gc::downgrade_with(&c, |_| unreachable!("handle dropped first"));
        drop(c);
        drop(local);
    })
    .join()
    .unwrap();
    // The cycles are freed by the final collection, and `live` when its
    // thread-local is destroyed, whichever runs first; each at most once.
    assert!(drops.load(SeqCst) >= 3, "{} drops", drops.load(SeqCst));
    assert!(drops.load(SeqCst) <= 4);
    assert!(fired.load(SeqCst) <= 2);
}

#[test]
fn exiting_with_frozen_objects_does_not_crash() {
    let frozen_drops = Arc::new(AtomicUsize::new(0));
    let young_drops = Arc::new(AtomicUsize::new(0));
    let (fd, yd) = (frozen_drops.clone(), young_drops.clone());
    thread::spawn(move || {
        // Frozen garbage and a frozen live object.
        garbage_ring(&fd, 2);
        let keep = node(&fd);
        gencc::freeze();
        assert_eq!(gencc::freeze_count(), 3);
        // Garbage made after the freeze, one cycle through the frozen object.
        garbage_ring(&yd, 3);
        let y = node(&yd);
        link(&keep, &y);
        drop(y);
        drop(keep);
    })
    .join()
    .unwrap();
    // The exit collection unfreezes first, so the frozen garbage (the ring
    // and `keep`) is freed with the rest, each object exactly once.
    assert_eq!(young_drops.load(SeqCst), 4);
    assert_eq!(frozen_drops.load(SeqCst), 3);
}

#[test]
fn exiting_with_everything_at_once_does_not_crash() {
    let drops = Arc::new(AtomicUsize::new(0));
    let d = drops.clone();
    thread::spawn(move || {
        let frozen = node(&d);
        link(&frozen, &frozen);
        let w = Gc::downgrade_with(&frozen, |_| {});
        KEPT.with(|k| k.borrow_mut().push(w));
        gencc::freeze();
        drop(frozen);
        gencc::register_callback(|_| panic!("never called at exit"));
        for _ in 0..100 {
            garbage_ring(&d, 5);
        }
        gencc::set_debug(gencc::DEBUG_STATS);
    })
    .join()
    .unwrap();
    assert!(drops.load(SeqCst) >= 500);
}

#[test]
fn many_threads_exit_independently() {
    let drops = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let d = drops.clone();
            thread::spawn(move || {
                for _ in 0..=i {
                    garbage_ring(&d, 4);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(drops.load(SeqCst), 4 * (1..=8).sum::<usize>());
}

thread_local! {
    /// Registered before the thread's heap exists, so destroyed after the
    /// heap's exit guard (thread-local destructors run last-registered first):
    /// `LATE_TRACKED`, then `LATE`, then `LATE_WEAK`.
    static LATE_WEAK: RefCell<Vec<Weak<u32>>> = const { RefCell::new(Vec::new()) };
    static LATE: RefCell<Vec<Gc<u32>>> = const { RefCell::new(Vec::new()) };
    static LATE_TRACKED: RefCell<Vec<Gc<Node>>> = const { RefCell::new(Vec::new()) };
}

/// Objects that outlive the exit guard keep the heap alive, and the heap is
/// released when the last of them goes, even when that last one goes from a
/// weak callback run by the death of an untracked object. Miri checks that
/// nothing leaks and that the heap is not freed while still in use.
#[test]
fn objects_outliving_the_exit_guard_release_the_heap_last() {
    let drops = Arc::new(AtomicUsize::new(0));
    let fired = Arc::new(AtomicUsize::new(0));
    let (d, f) = (drops.clone(), fired.clone());
    thread::spawn(move || {
        LATE_WEAK.with(|_| ());
        LATE.with(|_| ());
        LATE_TRACKED.with(|_| ());
        // A tracked object held by a late thread-local: alive at the exit
        // collection, freed when that thread-local is destroyed.
        let a = node(&d);
        LATE_TRACKED.with(|l| l.borrow_mut().push(a));
        // An untracked object whose weak callback owns the last handle to a
        // tracked node: the callback's end drops it, emptying the heap while
        // the untracked object is still being destroyed.
        let atom = Gc::new(7u32);
        let owned = node(&d);
        let f1 = f.clone();
        let w = Gc::downgrade_with(&atom, move |_| {
            f1.fetch_add(1, SeqCst);
            drop(owned);
        });
        LATE.with(|l| l.borrow_mut().push(atom));
        LATE_WEAK.with(|l| l.borrow_mut().push(w));
    })
    .join()
    .unwrap();
    assert_eq!(fired.load(SeqCst), 1);
    assert_eq!(drops.load(SeqCst), 2);
}
