//! Object and handle sizes, measured with a counting global allocator: the
//! untracked header is half of `Rc`'s, and the tracked one adds the two list
//! links and, without the pool, a vtable pointer.
//!
//! The allocator records only the allocations made on a thread that asked for
//! it, between `start` and `finish`, so the tests of this binary can run in
//! parallel.
//!
//! With the `pool` feature (the default) objects come from gencc's own pools,
//! which the global allocator never sees, so these measurements only apply
//! without it: CI runs them in its `cargo test --no-default-features
//! --features derive` step.
#![cfg(not(feature = "pool"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::mem::size_of;
use std::rc::Rc;

use gencc::{Gc, Trace, Tracer};

const SLOTS: usize = 16;

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(false) };
    /// Sizes of the allocations recorded so far; fixed storage, so that
    /// recording never allocates.
    static SIZES: Cell<[usize; SLOTS]> = const { Cell::new([0; SLOTS]) };
    static RECORDED: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping touches only const-initialised thread-locals, which never
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout);
        // SAFETY: forwarded from the caller.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(Layout::from_size_align(new_size, layout.align()).unwrap());
        // SAFETY: forwarded from the caller.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn note(layout: Layout) {
    // `try_with`: allocations during thread teardown are simply not recorded.
    let _ = RECORDING.try_with(|recording| {
        if recording.get() {
            let n = RECORDED.with(Cell::get);
            if n < SLOTS {
                let mut sizes = SIZES.with(Cell::get);
                sizes[n] = layout.size();
                SIZES.with(|s| s.set(sizes));
            }
            RECORDED.with(|r| r.set(n + 1));
        }
    });
}

/// The sizes of the allocations `f` makes on this thread.
fn allocations<R>(f: impl FnOnce() -> R) -> (R, Vec<usize>) {
    RECORDED.with(|r| r.set(0));
    RECORDING.with(|r| r.set(true));
    let result = f();
    RECORDING.with(|r| r.set(false));
    let n = RECORDED.with(Cell::get);
    assert!(n <= SLOTS, "{n} allocations");
    (result, SIZES.with(Cell::get)[..n].to_vec())
}

/// Makes sure this thread's heap exists, so that its creation is not
/// counted as part of the first object's allocation.
fn warm_up() {
    let _ = gencc::count();
}

/// A tracked node with 8 bytes of payload: one optional handle.
struct Node {
    next: Option<Gc<Node>>,
}

// SAFETY: `next` is the only handle, owned by the node alone and reported
// once; nothing is mutated.
unsafe impl Trace for Node {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(next) = &self.next {
            next.trace(tracer);
        }
    }
}

#[test]
fn the_counting_allocator_sees_allocations() {
    let (_, sizes) = allocations(|| Box::new([0u8; 123]));
    assert_eq!(sizes, [123]);
    let (_, sizes) = allocations(|| ());
    assert!(sizes.is_empty());
}

#[test]
fn untracked_gc_allocates_less_than_rc() {
    warm_up();
    let (gc, gc_sizes) = allocations(|| Gc::new(7u64));
    let (rc, rc_sizes) = allocations(|| Rc::new(7u64));
    assert_eq!(gc_sizes.len(), 1, "{gc_sizes:?}");
    assert_eq!(rc_sizes.len(), 1, "{rc_sizes:?}");
    assert!(
        gc_sizes[0] < rc_sizes[0],
        "{gc_sizes:?} against {rc_sizes:?}"
    );
    assert!(!Gc::is_tracked(&gc));
    #[cfg(target_pointer_width = "64")]
    assert_eq!(gc_sizes, [16], "8-byte header + 8-byte value");
    // Dropping frees without allocating.
    let ((), sizes) = allocations(|| drop((gc, rc)));
    assert!(sizes.is_empty());
}

#[test]
fn untracked_gc_string_allocates_less_than_rc_string() {
    warm_up();
    let (s1, s2) = (String::from("hello"), String::from("hello"));
    let (gc, gc_sizes) = allocations(|| Gc::new(s1));
    let (_rc, rc_sizes) = allocations(|| Rc::new(s2));
    assert_eq!(gc_sizes.len(), 1, "{gc_sizes:?}");
    assert!(!Gc::is_tracked(&gc));
    #[cfg(target_pointer_width = "64")]
    {
        assert_eq!(gc_sizes, [8 + size_of::<String>()]);
        assert_eq!(rc_sizes, [16 + size_of::<String>()]);
    }
}

/// Without the pool nothing can keep the vtable for a whole page of
/// objects, so each tracked object carries its vtable pointer: 8 bytes of
/// it, 16 of links and 8 of header.
#[test]
fn tracked_node_has_a_32_byte_header() {
    warm_up();
    assert_eq!(size_of::<Node>(), size_of::<usize>());
    let (first, sizes) = allocations(|| Gc::new(Node { next: None }));
    assert!(Gc::is_tracked(&first));
    assert_eq!(sizes.len(), 1, "{sizes:?}");
    #[cfg(target_pointer_width = "64")]
    {
        assert!(sizes[0] <= 40, "{sizes:?}");
        assert_eq!(sizes, [32 + 8]);
    }
    // The next one costs the same: linking into a generation allocates
    // nothing.
    let (_second, sizes2) = allocations(|| {
        Gc::new(Node {
            next: Some(first.clone()),
        })
    });
    assert_eq!(sizes2, sizes);
}

#[test]
fn handles_are_one_pointer_wide() {
    assert_eq!(size_of::<Gc<u64>>(), size_of::<usize>());
    assert_eq!(size_of::<Option<Gc<u64>>>(), size_of::<usize>());
    assert_eq!(size_of::<Gc<Node>>(), size_of::<usize>());
    assert_eq!(size_of::<Option<Gc<Node>>>(), size_of::<usize>());
    assert_eq!(size_of::<Gc<String>>(), size_of::<Option<Gc<String>>>());
    #[cfg(target_pointer_width = "64")]
    {
        assert_eq!(size_of::<Gc<u64>>(), 8);
        assert_eq!(size_of::<Option<Gc<Node>>>(), 8);
    }
}
