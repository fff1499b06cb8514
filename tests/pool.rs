//! The `pool` feature (on by default): objects of assorted sizes through
//! `Gc`, million-node shapes, memory reuse, empty arenas kept for the next
//! growth and all returned at thread exit, and a property test of random
//! allocation and destruction.
//!
//! A counting global allocator tracks the arenas the pool holds from it, per
//! slot: a thread that claims a slot has its arena allocations and frees
//! counted there, including those made while its thread-locals are torn down,
//! so the test that spawned it can check them after `join`.

#![cfg(feature = "pool")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering::SeqCst};
use std::thread;

use gencc::pool::{arenas, busy_arenas, cached_arenas, ARENA_SIZE, POOL_SIZE};
use gencc::{Gc, Trace, Tracer};
use proptest::prelude::*;

const SLOTS: usize = 64;
/// Arenas currently allocated from the global allocator, per slot; slot 0
/// is shared by the threads that claimed none.
static ARENAS: [AtomicIsize; SLOTS] = [const { AtomicIsize::new(0) }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// No destructor: readable while the thread's thread-locals are dropped.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Counts this thread's arenas in a slot of its own from now on.
fn claim_slot() -> usize {
    let slot = NEXT_SLOT.fetch_add(1, SeqCst);
    assert!(slot < SLOTS);
    SLOT.with(|s| s.set(slot));
    slot
}

fn count(delta: isize) {
    let slot = SLOT.try_with(Cell::get).unwrap_or(0);
    ARENAS[slot].fetch_add(delta, SeqCst);
}

struct Counting;

fn is_arena(layout: Layout) -> bool {
    layout.size() == ARENA_SIZE && layout.align() == POOL_SIZE
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping is one atomic counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_arena(layout) {
            count(1);
        }
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_arena(layout) {
            count(-1);
        }
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A tracked node with `N` bytes of payload and one edge.
struct Node<const N: usize> {
    data: [u8; N],
    next: RefCell<Option<Gc<Node<N>>>>,
}

// SAFETY: `next` is the only field that can hold a handle; the node owns it
// alone and reports it at most once, reading with `try_borrow`.
unsafe impl<const N: usize> Trace for Node<N> {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Ok(next) = self.next.try_borrow() {
            if let Some(next) = &*next {
                next.trace(tracer);
            }
        }
    }
}

fn fill<const N: usize>(seed: u8) -> [u8; N] {
    core::array::from_fn(|i| seed.wrapping_add(i as u8).wrapping_mul(3))
}

fn node<const N: usize>(seed: u8) -> Gc<Node<N>> {
    Gc::new(Node {
        data: fill(seed),
        next: RefCell::new(None),
    })
}

fn link<const N: usize>(from: &Gc<Node<N>>, to: &Gc<Node<N>>) {
    *from.next.borrow_mut() = Some(to.clone());
}

/// A live object under test: where its value lies, and whether it still
/// holds what was written into it.
trait Probe {
    fn range(&self) -> (usize, usize);
    fn intact(&self) -> bool;
}

struct Plain<const N: usize>(Gc<[u8; N]>, u8);
struct Tracked<const N: usize>(Gc<Node<N>>, u8);

impl<const N: usize> Probe for Plain<N> {
    fn range(&self) -> (usize, usize) {
        let start = Gc::as_ptr(&self.0).addr();
        (start, start + N)
    }
    fn intact(&self) -> bool {
        *self.0 == fill::<N>(self.1)
    }
}

impl<const N: usize> Probe for Tracked<N> {
    fn range(&self) -> (usize, usize) {
        let start = Gc::as_ptr(&self.0).addr();
        (start, start + core::mem::size_of::<Node<N>>())
    }
    fn intact(&self) -> bool {
        self.0.data == fill::<N>(self.1)
    }
}

/// An object of kind `kind` (sizes from 8 to 1000 bytes, untracked and
/// tracked, some in self- or two-node cycles that only a collection frees).
fn make(kind: u8, seed: u8) -> Box<dyn Probe> {
    match kind % 10 {
        0 => Box::new(Plain::<1>(Gc::new(fill(seed)), seed)),
        1 => Box::new(Plain::<8>(Gc::new(fill(seed)), seed)),
        2 => Box::new(Plain::<40>(Gc::new(fill(seed)), seed)),
        3 => Box::new(Plain::<300>(Gc::new(fill(seed)), seed)),
        4 => Box::new(Plain::<1000>(Gc::new(fill(seed)), seed)),
        5 => Box::new(Tracked::<8>(node(seed), seed)),
        6 => Box::new(Tracked::<100>(node(seed), seed)),
        7 => Box::new(Tracked::<480>(node(seed), seed)),
        8 => {
            let n = node::<24>(seed);
            link(&n, &n);
            Box::new(Tracked::<24>(n, seed))
        }
        _ => {
            let (a, b) = (node::<64>(seed), node::<64>(seed));
            link(&a, &b);
            link(&b, &a);
            Box::new(Tracked::<64>(a, seed))
        }
    }
}

#[test]
fn objects_of_every_kind_survive_and_are_freed() {
    let base = busy_arenas();
    let n = if cfg!(miri) { 50 } else { 5_000 };
    let objects: Vec<_> = (0..n).map(|i| make(i as u8, (i * 7) as u8)).collect();
    assert!(busy_arenas() > base);
    assert!(objects.iter().all(|o| o.intact()));
    drop(objects);
    gencc::collect();
    assert_eq!(busy_arenas(), base);
}

/// A tracked object whose box fits a pool keeps its vtable in the pool:
/// 24 bytes in front of its value. A larger one carries the pointer: 32.
#[test]
fn pooled_tracked_objects_carry_no_vtable_pointer() {
    let small = node::<32>(1);
    assert_eq!(
        Gc::allocated_bytes(&small),
        24 + core::mem::size_of::<Node<32>>()
    );
    let large = node::<600>(2);
    assert_eq!(
        Gc::allocated_bytes(&large),
        32 + core::mem::size_of::<Node<600>>()
    );
    let leaf = Gc::new(7u64);
    assert_eq!(Gc::allocated_bytes(&leaf), 16);
}

/// Two types that point at each other, one too large for the pools (its
/// vtable inline), one in a tagged pool.
struct Big {
    data: [u8; 600],
    next: RefCell<Option<Gc<Small>>>,
}
struct Small {
    data: u64,
    next: RefCell<Option<Gc<Big>>>,
}

// SAFETY: `next` is the only field that can hold a handle, owned by the
// object alone and reported once.
unsafe impl Trace for Big {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.next.trace(tracer);
    }
}

// SAFETY: as for `Big`.
unsafe impl Trace for Small {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.next.trace(tracer);
    }
}

#[test]
fn cycles_through_both_layouts_are_collected() {
    let base = busy_arenas();
    let n = if cfg!(miri) { 5 } else { 2_000 };
    let mut pairs = Vec::new();
    for i in 0..n {
        let big = Gc::new(Big {
            data: [i as u8; 600],
            next: RefCell::new(None),
        });
        let small = Gc::new(Small {
            data: i,
            next: RefCell::new(Some(big.clone())),
        });
        *big.next.borrow_mut() = Some(small.clone());
        assert_eq!(
            Gc::allocated_bytes(&small),
            24 + core::mem::size_of::<Small>()
        );
        assert_eq!(Gc::allocated_bytes(&big), 32 + core::mem::size_of::<Big>());
        pairs.push((big, small));
    }
    for (i, (b, s)) in pairs.iter().enumerate() {
        assert!(b.data.iter().all(|&x| x == i as u8) && s.data == i as u64);
    }
    let weaks: Vec<_> = pairs
        .iter()
        .map(|(b, s)| (Gc::downgrade(b), Gc::downgrade(s)))
        .collect();
    drop(pairs);
    assert_eq!(gencc::collect(), 2 * n as usize);
    assert!(weaks
        .iter()
        .all(|(b, s)| b.upgrade().is_none() && s.upgrade().is_none()));
    drop(weaks);
    assert_eq!(busy_arenas(), base);
}

/// Makes a two-node cycle and a live node of `Node<N>` for each `N` given.
macro_rules! each_type {
    ($cycles:ident, $live:ident; $($n:literal)*) => {$(
        {
            let (a, b) = (node::<$n>($n), node::<$n>($n + 1));
            link(&a, &b);
            link(&b, &a);
            $cycles += 1;
            $live.push(Box::new(Tracked::<$n>(node::<$n>($n + 2), $n + 2)) as Box<dyn Probe>);
        }
    )*};
}

/// A thread has 64 tagged pool lists; the tracked types it allocates after
/// they are all taken keep their vtable inline, and are collected the same.
#[test]
fn tracked_types_beyond_the_tagged_lists_keep_their_vtable_inline() {
    thread::spawn(|| {
        let mut cycles = 0;
        let mut live: Vec<Box<dyn Probe>> = Vec::new();
        each_type!(cycles, live;
            0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29
            30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57
            58 59 60 61 62 63 64 65 66 67 68 69);
        let first = node::<0>(9);
        assert_eq!(
            Gc::allocated_bytes(&first),
            24 + core::mem::size_of::<Node<0>>(),
            "the first type has a tagged list"
        );
        let last = node::<69>(9);
        assert_eq!(
            Gc::allocated_bytes(&last),
            32 + core::mem::size_of::<Node<69>>(),
            "the lists ran out before the 70th type"
        );
        assert_eq!(gencc::collect(), 2 * cycles);
        assert!(live.iter().all(|o| o.intact()));
    })
    .join()
    .unwrap();
}

#[test]
fn memory_is_reused() {
    let a = Gc::new(7u64);
    let addr = Gc::as_ptr(&a).addr();
    drop(a);
    let b = Gc::new(8u64);
    assert_eq!(
        Gc::as_ptr(&b).addr(),
        addr,
        "the block just freed comes first"
    );

    let n = if cfg!(miri) { 150 } else { 100_000 };
    let first: Vec<_> = (0..n).map(|i| node::<16>(i as u8)).collect();
    let held = arenas();
    drop(first);
    gencc::collect();
    for _ in 0..3 {
        let again: Vec<_> = (0..n).map(|i| node::<16>(i as u8)).collect();
        assert_eq!(arenas(), held, "the same arenas serve the next round");
        drop(again);
    }
}

#[test]
fn empty_arenas_are_kept_for_the_next_growth() {
    let slot = claim_slot();
    let before = arenas();
    let base = busy_arenas();
    // Enough 464-byte blocks for several arenas (8 per pool, 64 pools each).
    let n = if cfg!(miri) { 1_500 } else { 50_000 };
    let nodes: Vec<_> = (0..n).map(|i| Gc::new([i as u64; 56])).collect();
    let held = busy_arenas() - base;
    let total = arenas();
    assert!(held >= n / (8 * 64), "{held} arenas");
    // The counter agrees with the global allocator's view.
    assert_eq!(ARENAS[slot].load(SeqCst), (arenas() - before) as isize);
    // Keep one node in sixteen: every arena still has some pools in use.
    let (keep, rest): (Vec<_>, Vec<_>) = nodes
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 16 == 0);
    drop(rest);
    assert_eq!(busy_arenas() - base, held);
    assert!(keep.iter().all(|(i, n)| **n == [*i as u64; 56]));
    drop(keep);
    assert_eq!(busy_arenas(), base);
    assert_eq!(arenas(), total, "empty arenas are kept");
    assert!(cached_arenas() + 1 >= held);
    // Growing again maps nothing new.
    let again: Vec<_> = (0..n).map(|i| Gc::new([i as u64; 56])).collect();
    assert_eq!(arenas(), total);
    drop(again);
}

#[test]
fn a_thread_returns_its_arenas_even_for_objects_freed_during_teardown() {
    thread_local! {
        /// Dropped during thread-local teardown, possibly after the pool's
        /// own exit destructor.
        static LATE: RefCell<Vec<Gc<Node<40>>>> = const { RefCell::new(Vec::new()) };
    }
    let slot = thread::spawn(|| {
        let slot = claim_slot();
        // Live objects, garbage cycles for the exit collection, and objects
        // a thread-local frees during teardown.
        let n = if cfg!(miri) { 120 } else { 2_000 };
        let live: Vec<_> = (0..n).map(|i| node::<100>(i as u8)).collect();
        for i in 0..n / 4 {
            let (a, b) = (node::<64>(i as u8), node::<64>(i as u8));
            link(&a, &b);
            link(&b, &a);
        }
        LATE.with(|l| l.borrow_mut().extend((0..n).map(|i| node::<40>(i as u8))));
        assert!(ARENAS[slot].load(SeqCst) > 0);
        drop(live);
        slot
    })
    .join()
    .unwrap();
    assert_eq!(
        ARENAS[slot].load(SeqCst),
        0,
        "arenas left behind by the thread"
    );

    // A thread that only allocated and freed keeps its pool, and so the
    // pool's arena, until it exits.
    let slot = thread::spawn(|| {
        let slot = claim_slot();
        drop(Gc::new(1u64));
        assert_eq!((arenas(), busy_arenas()), (1, 0));
        assert_eq!(ARENAS[slot].load(SeqCst), 1);
        slot
    })
    .join()
    .unwrap();
    assert_eq!(ARENAS[slot].load(SeqCst), 0);
}

#[test]
#[cfg_attr(miri, ignore)]
fn million_node_chain() {
    let base = busy_arenas();
    let mut head = node::<8>(0);
    for i in 1..1_000_000u32 {
        let n = node::<8>(i as u8);
        *n.next.borrow_mut() = Some(head);
        head = n;
    }
    let per_arena = 256 * 1024 / Gc::allocated_bytes(&head);
    assert!(busy_arenas() - base >= 1_000_000 / per_arena);
    drop(head);
    assert_eq!(gencc::collect(), 0);
    assert_eq!(busy_arenas(), base);
}

#[test]
#[cfg_attr(miri, ignore)]
fn million_node_ring() {
    let base = busy_arenas();
    let first = node::<8>(0);
    let mut last = first.clone();
    for i in 1..1_000_000u32 {
        let n = node::<8>(i as u8);
        link(&last, &n);
        last = n;
    }
    link(&last, &first);
    drop((first, last));
    assert_eq!(gencc::collect(), 1_000_000);
    assert_eq!(busy_arenas(), base);
}

#[derive(Debug, Clone)]
enum Op {
    Make { kind: u8, seed: u8 },
    Drop(usize),
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), any::<u8>()).prop_map(|(kind, seed)| Op::Make { kind, seed }),
        4 => any::<usize>().prop_map(Op::Drop),
        1 => Just(Op::Collect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_objects_never_overlap_and_keep_their_contents(
        ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 60 } else { 1500 }),
    ) {
        let base = busy_arenas();
        let mut live: Vec<Box<dyn Probe>> = Vec::new();
        for op in ops {
            match op {
                Op::Make { kind, seed } => {
                    let o = make(kind, seed);
                    let (start, end) = o.range();
                    for other in &live {
                        let (s, e) = other.range();
                        prop_assert!(end <= s || e <= start, "two live objects overlap");
                    }
                    live.push(o);
                }
                Op::Drop(i) if !live.is_empty() => {
                    let o = live.swap_remove(i % live.len());
                    prop_assert!(o.intact());
                }
                Op::Drop(_) => {}
                Op::Collect => {
                    gencc::collect();
                }
            }
            prop_assert!(live.iter().all(|o| o.intact()));
        }
        drop(live);
        gencc::collect();
        prop_assert_eq!(busy_arenas(), base);
    }
}
