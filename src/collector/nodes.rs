//! The array of examined objects, kept outside the allocator's heap when it
//! is large.
//!
//! A full collection of a million objects needs an 8 MB array (see
//! [`walk`](super::walk)). Taking that from the global allocator looks free
//! but is not with glibc: freeing a block of 64 KiB or more makes glibc merge
//! every small free block it caches (here: the garbage the collection just
//! freed) and hand the merged memory back to the kernel, so the next program
//! phase faults all of it in again. On the pairs workload that cost 14 ns per
//! object, a third of the whole collection. A large array is therefore
//! mapped from the kernel directly and unmapped afterwards, which glibc never
//! sees. A small one (any young collection) is an ordinary allocation, made
//! once at [`SMALL`] nodes and kept by the heap from one collection to the
//! next: glibc treats a request of a kilobyte or more like a large one and
//! first merges its cached small blocks, which on young collections (whose
//! garbage just filled that cache) cost 43 instructions per young object.
//!
//! The heap keeps the last array, whatever its size, from one collection to
//! the next: a program that collects a large heap again and again (a big
//! structure built and dropped in a loop, with young collections in between)
//! maps, zero-fills and unmaps 8 MB per million objects only once. A full
//! collection lets it go when the heap holds fewer tracked objects than a
//! sixteenth of its slots. The margin is wide because the automatic full
//! collections of a structure being rebuilt see the heap long before it has
//! grown back (the first comes after some 70,000 allocations with the
//! default thresholds); letting the array go there would map and zero it
//! again at every rebuild, 3 ns per object on a million-node ring.
//!
//! A collection cannot tell in advance how many objects its search will take
//! in. It starts with the kept array, or a small one, and doubles it when
//! full; once the search stops being selective it knows the rest, and grows
//! the array to fit in one step. (A mapped array is populated when it is
//! mapped, so reserving more than is needed costs the zeroing of it.)

use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use std::alloc::{self, Layout};

use crate::header::Links;

type Node = NonNull<Links>;

/// Arrays of at least this many bytes are mapped, when the platform allows.
///
/// Invariant: below glibc's 64 KiB consolidation threshold, so that no
/// heap-allocated array can trigger the merge described above.
const MAP_MIN_BYTES: usize = 32 << 10;

/// The capacity of a small array: the most a kept array holds, and the least
/// any array that is not mapped is allocated with.
pub(crate) const SMALL: usize = MAP_MIN_BYTES / core::mem::size_of::<Node>();

/// A growable array of nodes (they are `Copy` and need no drop).
pub(crate) struct Nodes {
    ptr: NonNull<Node>,
    len: usize,
    cap: usize,
    mapped: bool,
}

impl Nodes {
    /// An empty array with room for `cap` nodes.
    pub(crate) fn with_capacity(cap: usize) -> Self {
        let (ptr, mapped) = obtain(cap.max(1));
        Nodes {
            ptr,
            len: 0,
            cap: cap.max(1),
            mapped,
        }
    }

    /// `spare` emptied, or a new small array, for a collection that cannot
    /// tell in advance how many objects it will hold.
    pub(crate) fn recycle(spare: Option<Nodes>) -> Self {
        match spare {
            Some(mut spare) => {
                spare.len = 0;
                spare
            }
            None => Nodes::with_capacity(SMALL),
        }
    }

    /// Makes room for `cap` nodes in all, in one step.
    pub(crate) fn reserve_total(&mut self, cap: usize) {
        if cap > self.cap {
            self.grow_to(cap);
        }
    }

    /// Whether a heap of `objects` tracked objects should keep this array for
    /// the next collection: a small one always; a large one while the heap
    /// could still fill a sixteenth of it.
    pub(crate) fn worth_keeping(&self, objects: usize) -> bool {
        self.cap <= SMALL || objects >= self.cap / 16
    }

    #[inline]
    pub(crate) fn push(&mut self, node: Node) {
        if self.len == self.cap {
            self.grow();
        }
        // SAFETY: `len < cap`, and the buffer holds `cap` slots.
        unsafe { self.ptr.as_ptr().add(self.len).write(node) };
        self.len += 1;
    }

    #[cold]
    fn grow(&mut self) {
        self.grow_to(self.cap * 2);
    }

    fn grow_to(&mut self, cap: usize) {
        let mut bigger = Nodes::with_capacity(cap);
        // SAFETY: both buffers are valid for `len` slots and distinct.
        unsafe {
            core::ptr::copy_nonoverlapping(self.ptr.as_ptr(), bigger.ptr.as_ptr(), self.len);
        }
        bigger.len = self.len;
        *self = bigger;
    }

    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

impl Deref for Nodes {
    type Target = [Node];

    #[inline]
    fn deref(&self) -> &[Node] {
        // SAFETY: the first `len` slots are initialised.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for Nodes {
    #[inline]
    fn deref_mut(&mut self) -> &mut [Node] {
        // SAFETY: as in `deref`, and `&mut self` is unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        // SAFETY: the buffer came from `obtain(self.cap)` with this `mapped`.
        unsafe { release(self.ptr, self.cap, self.mapped) }
    }
}

fn layout(cap: usize) -> Layout {
    Layout::array::<Node>(cap).unwrap_or_else(|_| capacity_overflow())
}

#[cold]
fn capacity_overflow() -> ! {
    panic!("gencc: too many objects for the collector's scratch array")
}

/// A buffer for `cap > 0` nodes, and whether it was mapped.
fn obtain(cap: usize) -> (NonNull<Node>, bool) {
    let layout = layout(cap);
    if layout.size() >= MAP_MIN_BYTES {
        if let Some(p) = map(layout.size()) {
            return (p, true);
        }
    }
    // SAFETY: `cap > 0`, so the layout has a nonzero size.
    let raw = unsafe { alloc::alloc(layout) };
    match NonNull::new(raw.cast::<Node>()) {
        Some(p) => (p, false),
        None => alloc::handle_alloc_error(layout),
    }
}

/// # Safety
///
/// - `ptr` must come from `obtain(cap)`, which said `mapped`, and not have
///   been released yet.
unsafe fn release(ptr: NonNull<Node>, cap: usize, mapped: bool) {
    if mapped {
        // SAFETY: forwarded from the caller.
        unsafe { unmap(ptr, layout(cap).size()) };
    } else {
        // SAFETY: forwarded from the caller: allocated with this layout.
        unsafe { alloc::dealloc(ptr.as_ptr().cast(), layout(cap)) };
    }
}

#[cfg(all(unix, not(miri)))]
fn map(size: usize) -> Option<NonNull<Node>> {
    #[cfg(target_os = "linux")]
    const FLAGS: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
    #[cfg(not(target_os = "linux"))]
    const FLAGS: libc::c_int = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: an anonymous private mapping at an address of the kernel's
    // choosing touches no existing memory.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            FLAGS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        // Page-aligned, hence aligned for `Node`.
        NonNull::new(p.cast())
    }
}

#[cfg(not(all(unix, not(miri))))]
fn map(_size: usize) -> Option<NonNull<Node>> {
    None
}

/// # Safety
///
/// - `ptr` must be a live mapping of `size` bytes made by [`map`].
#[cfg(all(unix, not(miri)))]
unsafe fn unmap(ptr: NonNull<Node>, size: usize) {
    // SAFETY: forwarded from the caller. A failure leaves the mapping in
    // place: a leak of scratch memory, never unsoundness.
    unsafe { libc::munmap(ptr.as_ptr().cast(), size) };
}

/// # Safety
///
/// - Never called: [`map`] never maps here.
#[cfg(not(all(unix, not(miri))))]
unsafe fn unmap(_ptr: NonNull<Node>, _size: usize) {
    unreachable!("no mapping is made on this platform")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: usize) -> Node {
        // Never dereferenced: only stored and compared.
        NonNull::new(core::ptr::without_provenance_mut(8 * (i + 1))).unwrap()
    }

    #[test]
    fn grows_past_its_capacity_and_keeps_order() {
        let mut v = Nodes::with_capacity(3);
        for i in 0..100 {
            v.push(node(i));
        }
        assert_eq!(v.len(), 100);
        assert!(v.iter().enumerate().all(|(i, n)| *n == node(i)));
        v[5] = node(99);
        v.truncate(6);
        assert_eq!(&v[4..], &[node(4), node(99)]);
    }

    #[test]
    fn a_large_array_is_usable_whatever_backs_it() {
        // 64 Ki nodes = 512 KiB: mapped where the platform allows.
        let n = 1 << 16;
        let mut v = Nodes::with_capacity(n);
        assert!(v.is_empty());
        for i in 0..n {
            v.push(node(i));
        }
        assert_eq!(v[n - 1], node(n - 1));
        assert_eq!(
            v.iter().filter(|p| p.as_ptr().addr() % 16 == 0).count(),
            n / 2
        );
    }

    #[test]
    fn a_large_array_is_kept_while_the_heap_could_fill_a_sixteenth_of_it() {
        let big = SMALL * 32;
        let mut a = Nodes::with_capacity(big);
        a.push(node(1));
        assert!(a.worth_keeping(big / 16));
        assert!(!a.worth_keeping(big / 16 - 1));
        let p = a.ptr;
        let a = Nodes::recycle(Some(a));
        assert_eq!((a.ptr, a.len), (p, 0), "recycled: the same array, emptied");
        assert!(Nodes::recycle(None).worth_keeping(0), "a small one always");
    }

    #[test]
    fn reserving_grows_in_one_step_and_keeps_the_contents() {
        let mut a = Nodes::recycle(None);
        assert_eq!(a.cap, SMALL);
        a.push(node(7));
        a.reserve_total(SMALL * 3);
        assert_eq!((a.cap, &a[..]), (SMALL * 3, &[node(7)][..]));
        a.reserve_total(SMALL);
        assert_eq!(a.cap, SMALL * 3, "never shrinks");
    }

    #[test]
    fn zero_capacity_is_allowed() {
        let mut v = Nodes::with_capacity(0);
        v.push(node(0));
        assert_eq!(&v[..], &[node(0)]);
    }
}
