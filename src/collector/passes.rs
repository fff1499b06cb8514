//! The passes that find garbage: CPython's `update_refs`, `subtract_refs`
//! and a marking pass, run over a set of tracked objects, then a partition.
//!
//! Two kinds of set are examined. A collection of generations examines their
//! dirty objects and what those reach inside the same generations
//! ([`detect_generations`], see [`dirty`](super::dirty)); the check for
//! resurrected garbage examines the whole garbage list ([`detect_garbage`]).
//!
//! While the passes run, each examined object's `prev` link holds a scratch
//! word instead of a pointer:
//!
//! ```text
//! bits 2..  gc_refs     strong count minus references from inside the set
//! bit 1     REACHED     found reachable from outside the set
//! bit 0     COLLECTING  the object belongs to the set being examined
//! ```
//!
//! Real pointers are 8-aligned, so an object whose `prev` has bit 0 clear is
//! outside the set: an older generation, the permanent set, a clean object no
//! dirty one reaches, or untracked. Its edges are never followed and
//! references from it count as external.
//!
//! The real strong count is only read, never written: a panic in the middle
//! leaves nothing to undo but the scratch words and the set's membership.

use core::ptr::{self, NonNull};

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;

use super::list::List;
use super::nodes::Nodes;
use super::{walk, State};
use crate::header::{Header, Links, DIRTY};
use crate::trace::Tracer;
use crate::weak::Registration;

const COLLECTING: usize = 0b01;
const REACHED: usize = 0b10;
const SHIFT: u32 = 2;
/// The largest `gc_refs` the scratch word can hold. A larger strong count is
/// clamped, which can only make an object look more referenced from outside,
/// never less: safe, at worst a missed collection.
const MAX_REFS: usize = usize::MAX >> SHIFT;

/// What the collector does with each edge a [`Tracer`] reports.
pub(crate) trait Visit {
    fn strong(&mut self, links: NonNull<Links>);
    fn weak(&mut self, _registration: &Registration) {}
}

#[inline]
fn scratch(links: &Links) -> usize {
    links.prev.get().addr()
}

#[inline]
fn set_scratch(links: &Links, word: usize) {
    links.prev.set(ptr::without_provenance(word));
}

/// Trace the object behind `links` with `visit`.
///
/// # Safety
///
/// - `links` must belong to a live tracked object whose value is not dropped.
unsafe fn trace(links: NonNull<Links>, visit: &mut dyn Visit) {
    // SAFETY: guaranteed by the caller; the vtable's trace expects exactly a
    // live header of its own type.
    unsafe {
        let header = Header::from_links(links);
        let mut tracer = Tracer { visit };
        (header.as_ref().vtable().trace)(header, &mut tracer);
    }
}

/// `gc_refs = strong - hold`, and mark every object as in the set. Returns
/// the objects in list order. Used for the garbage list, whose members no
/// header can tell apart; its `next` links are left intact, so that a panic
/// in a later pass can be undone by [`List::relink`].
///
/// `hold` is the number of references the collector itself owns on each
/// object (1 while it holds the garbage, 0 otherwise).
///
/// # Safety
///
/// - `list` must be a well-formed list of live tracked objects.
pub(crate) unsafe fn update_refs(list: &List, hold: usize) -> Nodes {
    // The objects a detection examines, in list order, so that the later
    // passes need not chase links (see `walk`).
    let mut nodes = Nodes::with_capacity(list.len());
    let end = list.sentinel();
    let mut cur = list.first();
    while let Some(node) = cur.filter(|n| *n != end) {
        // SAFETY: forwarded from the caller: the `next` chain leads through
        // live tracked objects back to the sentinel, and only `prev` is
        // rewritten here.
        unsafe {
            let next = node.as_ref().next.get();
            // The chase is the one walk that cannot look ahead; at least
            // start on the next object's lines while this one is handled.
            if let Some(n) = NonNull::new(next.cast_mut()) {
                walk::prefetch(n);
            }
            enter(node, hold);
            nodes.push(node);
            cur = NonNull::new(next.cast_mut());
        }
    }
    nodes
}

struct Subtract;

impl Visit for Subtract {
    #[inline]
    fn strong(&mut self, links: NonNull<Links>) {
        // SAFETY: reported by `Trace` from a live handle, so the object is
        // alive.
        let l = unsafe { links.as_ref() };
        let word = scratch(l);
        if word & COLLECTING != 0 {
            // An edge from inside the set: it does not keep the target alive
            // from outside. `Trace` rule 1 guarantees each such edge is backed
            // by one unit of the strong count, so this cannot go below zero;
            // a broken `Trace` is caught here in debug builds.
            debug_assert!(word >> SHIFT > 0, "Trace reported more edges than handles");
            if word >> SHIFT > 0 {
                set_scratch(l, word - (1 << SHIFT));
            }
        }
    }
}

/// Subtract one from `gc_refs` of the target of every edge inside the set.
/// Afterwards `gc_refs` is the number of references from outside the set.
///
/// # Safety
///
/// - `nodes` must be what `update_refs` returned.
pub(crate) unsafe fn subtract_refs(nodes: &[NonNull<Links>]) {
    // SAFETY: the objects are alive and unmodified since update_refs.
    walk::each(nodes, |node| unsafe { trace(node, &mut Subtract) })
}

struct Mark<'a, 'b> {
    work: &'a mut BumpVec<'b, NonNull<Links>>,
}

impl Visit for Mark<'_, '_> {
    #[inline]
    fn strong(&mut self, links: NonNull<Links>) {
        // SAFETY: as in `Subtract`.
        let l = unsafe { links.as_ref() };
        let word = scratch(l);
        if word & (COLLECTING | REACHED) == COLLECTING {
            set_scratch(l, word | REACHED);
            self.work.push(links);
        }
    }
}

/// Marks every object reachable from one with `gc_refs > 0`.
///
/// CPython does this inside `move_unreachable` by moving objects between two
/// lists as it scans. Here marking uses an explicit stack in the per-collection
/// arena and the lists are split afterwards by [`partition`]: the same linear
/// cost, with no recursion and no list surgery while `Trace` code runs.
///
/// # Safety
///
/// - `subtract_refs` must have run on `nodes`.
pub(crate) unsafe fn mark(nodes: &[NonNull<Links>], arena: &Bump) {
    let mut work = BumpVec::new_in(arena);
    // SAFETY: the objects are alive; marking only rewrites scratch bits.
    walk::each(nodes, |node| unsafe {
        let l = node.as_ref();
        let word = scratch(l);
        if word & REACHED == 0 && word >> SHIFT > 0 {
            set_scratch(l, word | REACHED);
            work.push(node);
            while let Some(next) = work.pop() {
                trace(next, &mut Mark { work: &mut work });
            }
        }
    })
}

/// Finds the garbage among generations `0..=max_gen`: examines their dirty
/// objects and everything those reach inside the same generations (see
/// [`dirty`]), and marks what of it is reachable from outside. Returns the
/// examined objects for [`partition`]; they are out of every list by then.
///
/// The first pass is CPython's `update_refs` and `subtract_refs` in one: the
/// dirty objects enter the set with their strong counts, then every member
/// is traced, in order. An edge to a member takes one from its count; an edge
/// to a clean object of the same generations brings that object in (out of
/// its list, with its count less this first edge), to be traced in its turn.
/// Each object's memory is thus visited once, where the two passes of CPython
/// visit it twice, and objects no dirty one reaches are not visited at all.
///
/// If a `Trace` impl panics, every examined object is put back, in
/// generation `max_gen` (dirty or clean as it was), and the panic returned.
///
/// # Safety
///
/// - The lists of generations `0..=max_gen` must be well formed, of live
///   tracked objects, and no other detection may be running.
/// - `st.unreachable` and `st.resurrected` must be empty.
///
/// `spare`: an array to reuse for the examined objects, if it is big enough.
pub(crate) unsafe fn detect_generations(
    st: &State,
    max_gen: usize,
    spare: Option<Nodes>,
    arena: &Bump,
) -> Result<Nodes, Box<dyn core::any::Any + Send>> {
    let dirty = &st.dirty[..=max_gen];
    let mut nodes = Nodes::reuse(spare, dirty.iter().map(List::len).sum());
    for list in dirty {
        let end = list.sentinel();
        let mut cur = list.first();
        while let Some(node) = cur.filter(|n| *n != end) {
            // SAFETY: forwarded from the caller: the `next` chain leads
            // through live tracked objects back to the sentinel, and only
            // `prev` is rewritten here.
            unsafe {
                let next = node.as_ref().next.get();
                if let Some(n) = NonNull::new(next.cast_mut()) {
                    walk::prefetch(n);
                }
                enter(node, 0);
                nodes.push(node);
                cur = NonNull::new(next.cast_mut());
            }
        }
        // Its nodes are all in `nodes` now, and relinked by `partition`.
        list.forget_all();
    }
    let run = core::panic::AssertUnwindSafe(|| {
        let mut i = 0;
        while i < nodes.len() {
            let node = nodes[i];
            if let Some(&ahead) = nodes.get(i + walk::AHEAD) {
                walk::prefetch(ahead);
            }
            let mut visit = Closure {
                st,
                max_gen,
                nodes: &mut nodes,
            };
            // SAFETY: members are live tracked objects with intact values.
            unsafe { trace(node, &mut visit) };
            i += 1;
        }
        // SAFETY: every member was traced; the counts are final.
        unsafe { mark(&nodes, arena) };
    });
    match std::panic::catch_unwind(run) {
        Ok(()) => Ok(nodes),
        Err(payload) => {
            for &node in nodes.iter() {
                // SAFETY: every member is out of all lists (its dirty list
                // was forgotten, or `Closure` unlinked it) and alive.
                unsafe {
                    let header = Header::from_links(node).as_ref();
                    header.set_generation(max_gen);
                    st.list_holding(header).push_back(node);
                }
            }
            Err(payload)
        }
    }
}

/// Runs the passes on the garbage list, relinking it if a `Trace` impl
/// panics. Returns the examined objects, in list order, for [`partition`],
/// after which the list must be [`List::forget_all`]ed.
///
/// Unlike [`detect_generations`], the whole list is examined: no header can
/// tell the garbage apart, so CPython's two first passes stay apart.
///
/// # Safety
///
/// - `list` must be the collector's well-formed list of live garbage, held
///   (one reference each, subtracted here), values intact, and no other
///   detection may be running.
pub(crate) unsafe fn detect_garbage(
    list: &List,
    arena: &Bump,
) -> Result<Nodes, Box<dyn core::any::Any + Send>> {
    let run = core::panic::AssertUnwindSafe(|| {
        // SAFETY: forwarded from the caller; each pass's precondition is the
        // previous pass.
        unsafe {
            let nodes = update_refs(list, 1);
            subtract_refs(&nodes);
            mark(&nodes, arena);
            nodes
        }
    });
    std::panic::catch_unwind(run).inspect_err(|_| list.relink())
}

/// Sets up the scratch word of an object joining the set: its strong count,
/// less `internal` references already known to come from inside the set.
///
/// # Safety
///
/// - `links` must belong to a live tracked object.
#[inline]
unsafe fn enter(links: NonNull<Links>, internal: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let header = Header::from_links(links);
        let refs = header.as_ref().strong(header).saturating_sub(internal);
        set_scratch(links.as_ref(), (refs.min(MAX_REFS) << SHIFT) | COLLECTING);
    }
}

/// The first pass's visitor: subtracts edges inside the set, and brings in
/// the clean objects of the examined generations that members reach.
struct Closure<'a> {
    st: &'a State,
    max_gen: usize,
    nodes: &'a mut Nodes,
}

impl Visit for Closure<'_> {
    #[inline]
    fn strong(&mut self, links: NonNull<Links>) {
        // SAFETY: reported by `Trace` from a live handle, so the object is
        // alive.
        let l = unsafe { links.as_ref() };
        if scratch(l) & COLLECTING != 0 {
            Subtract.strong(links);
            return;
        }
        if l.next.get().is_null() {
            // Unlinked: parked by the trashcan or dropped by the collector;
            // never part of a generation.
            return;
        }
        // SAFETY: as above; a tracked box has a header after its links.
        let header = unsafe { Header::from_links(links).as_ref() };
        let gen = header.generation();
        // Older generations and the permanent one stay outside. (A dirty
        // object of the examined generations is a member already.)
        if gen > self.max_gen || header.has(DIRTY) {
            return;
        }
        // SAFETY: a clean linked object of generation `gen` is in that
        // generation's list, whose members all have real links (examined
        // objects left it when they joined); then it is out of every list.
        unsafe {
            self.st.gens[gen].remove(links);
            enter(links, 1);
        }
        self.nodes.push(links);
    }
}

/// Splits the examined objects `nodes` into the reached ones, appended to
/// `reached_to` with generation `reached_gen`, and the rest, appended to
/// `unreached_to`. Restores real `prev` pointers and clears the `DIRTY`
/// marks of everything examined. Leaves in `nodes` only the unreached
/// objects, in their new list order, and calls `on_unreached` on each of
/// them (so that the caller's first walk over the garbage costs no extra
/// pass over memory). Returns how many were reached.
///
/// # Safety
///
/// - A detection must have succeeded and returned `nodes`, which must be in
///   no list now; no user code may have run since.
/// - `reached_to` and `unreached_to` must be well formed.
/// - `on_unreached` must not free the object or touch its links.
pub(crate) unsafe fn partition(
    nodes: &mut Nodes,
    reached_to: &List,
    reached_gen: usize,
    unreached_to: &List,
    mut on_unreached: impl FnMut(NonNull<Header>, &Header),
) -> usize {
    let mut reached = 0;
    let mut kept = 0;
    for i in 0..nodes.len() {
        let node = nodes[i];
        if let Some(&ahead) = nodes.get(i + walk::AHEAD) {
            walk::prefetch(ahead);
        }
        // SAFETY: examined objects are alive; each is pushed exactly once,
        // which overwrites the scratch word with a real `prev`.
        unsafe {
            let h = Header::from_links(node);
            let header = h.as_ref();
            // Examined: whatever it lost before no longer matters.
            header.clear(DIRTY);
            if scratch(node.as_ref()) & REACHED != 0 {
                reached += 1;
                header.set_generation(reached_gen);
                reached_to.push_back(node);
            } else {
                unreached_to.push_back(node);
                nodes[kept] = node;
                kept += 1;
                on_unreached(h, header);
            }
        }
    }
    nodes.truncate(kept);
    reached
}

struct WeakScan;

impl Visit for WeakScan {
    fn strong(&mut self, _links: NonNull<Links>) {}

    fn weak(&mut self, registration: &Registration) {
        registration.count_internal_handle();
    }
}

/// Counts, for every registration being scanned, the weak handles to it that
/// are stored inside the objects of `list`.
///
/// # Safety
///
/// - `nodes` must be live tracked objects with intact values.
pub(crate) unsafe fn count_weak_handles(nodes: &[NonNull<Links>]) {
    // SAFETY: forwarded from the caller; this visitor writes no scratch word.
    walk::each(nodes, |node| unsafe { trace(node, &mut WeakScan) })
}
