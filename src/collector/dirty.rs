//! Suspects: skipping collections that cannot find anything, and focusing
//! the others on what can.
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
//! positive number, and moves it to its generation's list of suspects (see
//! [`State::suspects`]). A collection whose generations have no suspect skips
//! the passes and only promotes, which is what the passes would have led to
//! anyway; its results, statistics and callbacks are the same. Building a
//! large live structure (where handles are moved into their parents, never
//! dropped) thus costs no scan at all, instead of the repeated scans CPython
//! pays.
//!
//! A collection may clear the mark of an object it keeps only if nothing it
//! took for an outside reference can turn out to be garbage. A younger
//! collection takes every reference from an older generation for an outside
//! one, yet the older object may be garbage too: if its only handle was
//! moved into the young object, it never lost a reference, and the young
//! object is the one dirty member of their cycle. Were the young collection
//! to clear that mark, no later collection would search for the cycle. So
//! only a collection of all three generations clears marks; a younger one
//! keeps them, and the survivors stay suspects in the generation they are
//! promoted to. The same holds for references from frozen objects, which even a full
//! collection takes for outside ones: [`unfreeze`](crate::unfreeze) marks
//! every object it brings back, so that the next full collection searches.
//!
//! A collection that does search goes further: it starts from the suspects
//! of its generations alone (see
//! [`passes::search_from_suspects`](super::passes)). Take garbage, as the
//! collection judges it, that nothing outside it refers to ("outside": the
//! program, older generations, frozen objects, live young ones). When a full
//! collection last kept its members, or when they were made, something
//! outside referred to them; now nothing does. A reference goes by being
//! dropped, which marks its target unless the target dies; by being moved
//! into the garbage, which only hands the question to the reference it came
//! from; or with the object holding it, which would then be garbage
//! referring to this garbage. So one member is marked, and no collection
//! since can have cleared the mark: only a full one clears marks, and only
//! on objects it finds reachable. Every garbage object is reachable from
//! such unreferenced garbage, so all of it lies in what the suspects reach.
//! Only those objects need examining; what they do not reach is alive, and
//! references from it are outside references like any other.
//!
//! Invariant: an object with `DIRTY` set is in a suspect list, or in the
//! middle of a collection (held in the collector's arrays or scratch lists,
//! where the flag means nothing until the collection files it again); a
//! linked object without it is in a clean list. Missing a suspect would leave
//! garbage uncollected, so every place that sets `DIRTY`, clears it, or moves
//! objects between generations moves the objects between lists with it.

use core::ptr::NonNull;

use super::state;
use crate::header::Header;

/// A tracked object's strong count just fell to a positive number: it
/// becomes a suspect. Out of line, as [`trashcan::release`] is, for
/// `Gc::drop`'s slow path to reach in tail position.
///
/// # Safety
///
/// - `h` must be a live tracked object, not `DIRTY`.
/// - No detection may be examining it (`Trace` rule 3: no handle is dropped
///   while the collector traces).
///
/// [`trashcan::release`]: super::trashcan::release
#[inline(never)]
pub(crate) unsafe fn mark(h: NonNull<Header>) {
    // SAFETY: a tracked object's box has links; the object is alive.
    let links = unsafe { Header::links(h) };
    // SAFETY: as above.
    if unsafe { links.as_ref() }.next.get().is_null() {
        // Unlinked objects (a value the collector dropped while `Drop` code
        // kept a handle) are never collected again.
        return;
    }
    let st = state();
    // SAFETY: alive, as above.
    let hdr = unsafe { h.as_ref() };
    // SAFETY: a linked, clean object outside any detection is in the clean
    // list its flags name, with real links; it moves to the suspect list of
    // the same generation (`push_back` rewrites both of its links).
    unsafe {
        st.list_of(hdr).take_out(links);
        hdr.set_dirty();
        st.list_of(hdr).push_back(links);
    }
}
