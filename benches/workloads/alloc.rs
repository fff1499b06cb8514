//! A counting global allocator for the bench binary.
//!
//! Counting is off by default, so the timed runs pay one relaxed load and a
//! predictable branch per allocation, the same for every crate. The child
//! processes that measure bytes per object and check for leaks turn it on
//! first thing (`enable`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

pub struct Counting;

static ON: AtomicBool = AtomicBool::new(false);
static COUNT: AtomicIsize = AtomicIsize::new(0);
static BYTES: AtomicIsize = AtomicIsize::new(0);

#[inline]
fn note(count: isize, bytes: isize) {
    if ON.load(Relaxed) {
        COUNT.fetch_add(count, Relaxed);
        BYTES.fetch_add(bytes, Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping only touches atomics and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(1, layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(1, layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-1, -(layout.size() as isize));
        // SAFETY: forwarded from the caller.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(0, new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Starts counting. Allocations made before this call are not counted, so
/// only differences between two [`live`] readings mean anything.
pub fn enable() {
    ON.store(true, Relaxed);
}

/// Whether [`enable`] was called: this is a check child.
pub fn enabled() -> bool {
    ON.load(Relaxed)
}

/// Live allocations and the bytes they requested (`Layout::size`), counted
/// since [`enable`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    pub count: isize,
    pub bytes: isize,
}

impl std::ops::Sub for Live {
    type Output = Live;
    fn sub(self, rhs: Live) -> Live {
        Live {
            count: self.count - rhs.count,
            bytes: self.bytes - rhs.bytes,
        }
    }
}

pub fn live() -> Live {
    Live {
        count: COUNT.load(Relaxed),
        bytes: BYTES.load(Relaxed),
    }
}

/// Puts the system allocator back in the state of a fresh process, as far as
/// it can be: glibc merges its free chunks and returns the top of the heap.
///
/// Every run calls this before it builds its graph, whatever the crate, so
/// that no run inherits the free lists the previous one left. Without it,
/// `Rc`'s runs alternated between two speeds on W5 (9.1–9.5 and 13–25.5 ns
/// per object, 9 and 12 of one series of 21 samples on 2026-12-06), because
/// a ring built from the chunks the previous ring freed lies in memory in
/// another order than the one it is walked in; its median then depended on
/// which speed happened to be in the majority. After a reset every crate
/// that uses glibc meets a heap as orderly as a fresh process's, so `Rc` is
/// measured at its best, which is what a lower bound is for. gencc's
/// arenas, in use or kept empty, are live allocations to glibc, which the
/// reset does not move.
pub fn reset_system_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` only reorganises glibc's free memory; it
        // takes no pointer and invalidates no live allocation.
        unsafe { malloc_trim(0) };
    }
}
