//! Skipping collections that cannot find anything.
//!
//! A set of objects can only have become garbage if one of them lost a strong
//! reference without dying. Every object starts with a reference from outside
//! (the handle `Gc::new` returns); for a cycle to end up unreachable, its last
//! outside reference must go, and a reference goes by a `Gc` being dropped:
//! the count falls to zero (the object dies at once and is no garbage) or
//! to a positive number. So if no object of the generations about to be
//! collected lost a reference since a detection last examined it, the passes
//! would find nothing: every object would come out reachable.
//!
//! `Gc::drop` marks such an object `DIRTY` the first time its count falls to a
//! positive number, and counts it in [`State::dirty`] under its generation.
//! A collection whose generations have no dirty object skips the passes and
//! only promotes, which is what the passes would have led to anyway; its
//! results, statistics and callbacks are the same. Building a large live
//! structure (where handles are moved into their parents, never dropped)
//! thus costs no scan at all, instead of the repeated scans CPython pays.
//!
//! A collection may clear the mark of an object it keeps only if nothing it
//! took for an outside reference can turn out to be garbage. A younger
//! collection takes every reference from an older generation for an outside
//! one, yet the older object may be garbage too: if its only handle was
//! moved into the young object, it never lost a reference, and the young
//! object is the one dirty member of their cycle. Were the young collection
//! to clear that mark, no later collection would search for the cycle. So
//! only a collection of all three generations clears marks; a younger one
//! keeps them, and they count in the generation the survivors are promoted
//! to. The same holds for references from frozen objects, which even a full
//! collection takes for outside ones: [`unfreeze`](crate::unfreeze) marks
//! every object it brings back, so that the next full collection searches.
//!
//! Invariant: `dirty[g]` is at least the number of objects with `DIRTY` set
//! whose generation number is `g` (linked in generation `g`, or held in the
//! collector's scratch lists). Over-counting only costs a detection that
//! finds nothing; under-counting would leave garbage uncollected, so every
//! place that sets `DIRTY`, clears it, or moves dirty objects between
//! generations keeps the counts with it.

use core::ptr::NonNull;

use super::{state, State};
use crate::header::{Header, DIRTY};

/// A tracked object's strong count just fell to a positive number.
///
/// # Safety
///
/// - `h` must be a live tracked object, not `DIRTY`.
#[cold]
#[inline(never)]
pub(crate) unsafe fn mark(h: NonNull<Header>) {
    // SAFETY: a tracked object's box has links; the object is alive.
    let linked = !unsafe { Header::links(h).as_ref() }.next.get().is_null();
    if !linked {
        // Unlinked objects (a value the collector dropped while `Drop` code
        // kept a handle) are never collected again.
        return;
    }
    // SAFETY: alive, as above.
    let hdr = unsafe { h.as_ref() };
    hdr.set(DIRTY);
    let c = &state().dirty[hdr.generation()];
    c.set(c.get() + 1);
}

/// `h` leaves its generation (dies or is parked): stop counting it.
pub(crate) fn forget(st: &State, hdr: &Header) {
    if hdr.has(DIRTY) {
        hdr.clear(DIRTY);
        let c = &st.dirty[hdr.generation()];
        c.set(c.get().saturating_sub(1));
    }
}

/// Marks an object as suspect without counting it; returns whether it was
/// not marked yet (the caller counts those).
pub(crate) fn suspect(hdr: &Header) -> bool {
    let fresh = !hdr.has(DIRTY);
    hdr.set(DIRTY);
    fresh
}

/// Moves the dirty counts of generations `from` into `to`, as their objects
/// are moved wholesale (freeze, unfreeze).
pub(crate) fn move_counts(st: &State, from: &[usize], to: usize) {
    for &g in from {
        let n = st.dirty[g].replace(0);
        st.dirty[to].set(st.dirty[to].get() + n);
    }
}
