//! Examining only what may have changed.
//!
//! A set of objects can only have become garbage if one of them lost a strong
//! reference without dying. Every object starts with a reference from outside
//! (the handle `Gc::new` returns); for a cycle to end up unreachable, its last
//! outside reference must go, and a reference goes by a `Gc` being dropped:
//! the count falls to zero (the object dies at once and is no garbage) or to
//! a positive number. `Gc::drop` marks an object `DIRTY` the first time the
//! latter happens and moves it from its generation's list to the
//! generation's *dirty* list. Examining an object (a detection's passes)
//! makes it clean again.
//!
//! Invariant: every garbage object is reachable, through tracked objects of
//! the generations being collected, from a dirty garbage object. Take the
//! path by which it was reachable when it was last examined (or created): for
//! it to be garbage now, some reference on that path went, and the object
//! that lost it is dirty, garbage, and still leads to it; if no reference on
//! the path went, its start lost its outside reference and is dirty itself.
//!
//! So a collection of generations `0..=n` starts from their dirty objects and
//! examines only what those reach inside the same generations
//! ([`passes::detect`](super::passes::detect)): objects outside that closure
//! cannot be garbage, and a reference from one of them into it is an outside
//! reference, exactly as a reference from an older generation is. It finds
//! exactly the garbage a scan of the whole generations would; the model-based
//! property test compares every collection against such a scan. The objects
//! it does not reach are promoted as the passes would have promoted them. A
//! collection with no dirty object examines nothing at all; a full collection
//! of a large, unchanged heap with a little young garbage costs in
//! proportion to that garbage, not to the heap.
//!
//! Getting this wrong in one direction only leaks: an object wrongly left out
//! of the examined set counts as alive, with everything it references.
//!
//! Garbage being destroyed also carries `DIRTY`, without being on a dirty
//! list (see `collect::FOR_DESTRUCTION`): it sits on the collector's scratch
//! lists and is never examined as part of a generation again.

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
    let links = unsafe { Header::links(h) };
    // SAFETY: as above.
    let linked = !unsafe { links.as_ref() }.next.get().is_null();
    let st = state();
    if !linked || st.examining.get() {
        // Unlinked objects (a value the collector dropped while `Drop` code
        // kept a handle) are never collected again. While a detection runs
        // only `Trace` code runs, and it may not drop handles (its rule 3);
        // one that does anyway leaves the object clean, which can only leak.
        return;
    }
    // SAFETY: alive, as above.
    let hdr = unsafe { h.as_ref() };
    // SAFETY: a clean linked object is in its generation's list, whose links
    // are real pointers outside a detection.
    unsafe { st.list_of(hdr.generation()).remove(links) };
    hdr.set(DIRTY);
    // SAFETY: just unlinked, alive.
    unsafe { st.dirty[hdr.generation()].push_back(links) };
}

/// Moves the objects of generations `from`, clean and dirty, to generation
/// `to`, which must not be among them (freeze, unfreeze).
pub(crate) fn move_generations(st: &State, from: &[usize], to: usize) {
    for &g in from {
        retag(st.list_of(g), to);
        st.list_of(to).append_all(st.list_of(g));
        retag(&st.dirty[g], to);
        st.dirty[to].append_all(&st.dirty[g]);
    }
}

/// Sets the generation number of every object of `list`.
pub(crate) fn retag(list: &super::list::List, gen: usize) {
    let mut cur = list.first();
    while let Some(node) = cur {
        // SAFETY: linked nodes are live tracked objects, walked with real
        // links (no detection runs while this is called).
        unsafe {
            Header::from_links(node).as_ref().set_generation(gen);
            cur = list.next_of(node);
        }
    }
}
