//! The passes that find garbage: CPython's `update_refs`, `subtract_refs`
//! and a marking pass, run over what the suspects of the collected
//! generations reach ([`search_from_suspects`]), or over the garbage list to
//! find what finalizers resurrected ([`detect_garbage`]).
//!
//! While they run, each object's `prev` link holds a scratch word instead of
//! a pointer:
//!
//! ```text
//! bits 4..  gc_refs      strong count minus references from inside the list
//! bit 3     HAD_CLEARED  (search) `WEAK_CLEARED` was set before it was taken in
//! bit 2     WAS_CLEAN    (search) `DIRTY` was clear before it was taken in
//! bit 1     REACHED      found reachable from outside the list
//! bit 0     COLLECTING   the object belongs to the list being examined
//! ```
//!
//! Real pointers are 8-aligned, so an object whose `prev` has bit 0 clear is
//! outside the set: an older generation, the permanent set, or untracked. Its
//! edges are never followed and references from it count as external. The
//! `next` links are never touched, so the list can always be walked and, after
//! the passes or after a panic in `Trace`, relinked by [`List::relink`].
//!
//! # The search condemns what it takes in
//!
//! Whatever the search finds unreachable is destroyed, and before the first
//! value is dropped the collector must hold a reference to every garbage
//! object and have marked it `DIRTY` and `WEAK_CLEARED` (see `collect`).
//! That is one write to every object's header, and on a heap larger than
//! the cache a walk that does little more still pays for bringing every
//! object's line in and writing it back: on a ring of a million nodes it
//! took 3.5 ns per object, a quarter of the collection. The search already
//! writes each object's scratch word, on the same cache line, so it takes
//! the hold and sets the marks there and then ([`Header::condemn`]), and
//! keeps in the scratch word what it needs to undo them. Garbage is the common case of a search that
//! finds anything: the objects found alive, fewer, are acquitted by
//! [`partition`] ([`Header::acquit`]), and if a `Trace` impl panics, every
//! object taken in is acquitted before it is filed back.
//!
//! Nothing user code can see changes before the first value is dropped:
//! `Trace` may neither create nor drop handles (its rule 3), so the held
//! count and the marks are observable from `trace` only through
//! `Gc::strong_count`. The detection on the garbage list after finalizers
//! ([`detect_garbage`]) takes nothing: its objects are held already.

use core::ptr::{self, NonNull};

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;

use super::list::List;
use super::nodes::{Nodes, SMALL};
use super::walk;
use super::State;
use crate::header::{Header, Links, DIRTY, WEAK_CLEARED};
use crate::primitive::cell::Cell;
use crate::trace::Tracer;
use crate::weak::Registration;

const COLLECTING: usize = 0b0001;
const REACHED: usize = 0b0010;
const WAS_CLEAN: usize = 0b0100;
const HAD_CLEARED: usize = 0b1000;
const SHIFT: u32 = 4;
/// The largest `gc_refs` the scratch word can hold: 2^60 - 1 on 64-bit
/// targets, 2^28 - 1 on 32-bit ones. A larger strong count is clamped, and a
/// clamped count is no longer known exactly: subtracting the edges from
/// inside could take it to zero while references from outside remain.
const MAX_REFS: usize = usize::MAX >> SHIFT;

/// Whether subtracting the edges from inside can take a clamped count to
/// zero. Each such edge is a handle stored in an object of the set (`Trace`
/// rule 1), so it needs `MAX_REFS` stored handles: 8 EiB with 64-bit
/// pointers, more than any address space, but 1 GiB with 32-bit ones. Where
/// it can, a `gc_refs` at `MAX_REFS` is never decremented: the object looks
/// referenced from outside, which is safe, at worst a missed collection.
/// Where it cannot, the test is compiled out of the subtraction's hot path.
const CLAMPED_STAYS: bool = usize::BITS < 64;

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

/// Trace the object behind `links` with `tracer`. A walk that needs its
/// visitor only through the tracer makes the tracer once, not per object.
///
/// # Safety
///
/// - `links` must belong to a live tracked object whose value is not dropped.
unsafe fn trace(links: NonNull<Links>, tracer: &mut Tracer<'_>) {
    // SAFETY: guaranteed by the caller; the vtable's trace expects exactly a
    // live header of its own type.
    unsafe {
        let header = Header::from_links(links);
        (Header::vtable(header).trace)(header, tracer);
    }
}

/// [`trace`] with a tracer made for this one object, for walks that use
/// their visitor between objects.
///
/// # Safety
///
/// - As for [`trace`].
unsafe fn trace_by(links: NonNull<Links>, visit: &mut dyn Visit) {
    // SAFETY: forwarded from the caller.
    unsafe { trace(links, &mut Tracer { visit }) }
}

/// `gc_refs = strong - hold`, and mark every object as in the set. Returns
/// the objects in list order. Used for the garbage list, whose members
/// cannot be told by their headers.
///
/// `hold` is the number of references the collector itself owns on each
/// object (1 while it holds the garbage, 0 otherwise).
///
/// # Safety
///
/// - `list` must be a well-formed list of live tracked objects.
unsafe fn update_refs(list: &List, hold: usize, outside: &Outside) -> Nodes {
    // The objects a detection examines, in list order, so that the later
    // passes need not chase links (see `walk`).
    let mut nodes = Nodes::with_capacity(list.len().max(SMALL));
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
            outside.add(enter(node, hold));
            nodes.push(node);
            cur = NonNull::new(next.cast_mut());
        }
    }
    nodes
}

/// The sum of `gc_refs` over the set, kept as the passes run: after
/// subtraction, the number of references from outside the set. When it is
/// zero nothing in the set is reachable from outside, everything is garbage,
/// and the marking scan (one more walk over every object) is skipped. Whole
/// structures dropped at once, the collections that free the most, are
/// exactly that case.
///
/// The sum saturates instead of overflowing. Once saturated it can only
/// overstate the true sum (which it then never reaches zero from, as fewer
/// than `usize::MAX` edges exist), and overstating only costs the scan.
///
/// A cell, so that a walk can add to it while its visitor, which subtracts
/// from it, is lent to the walk's one tracer.
#[derive(Default)]
struct Outside(Cell<usize>);

impl Outside {
    #[inline]
    fn add(&self, refs: usize) {
        self.0.set(self.0.get().saturating_add(refs));
    }

    /// One reference turned out to come from inside the set.
    #[inline]
    fn inside(&self) {
        self.0.set(self.0.get().saturating_sub(1));
    }

    #[inline]
    fn get(&self) -> usize {
        self.0.get()
    }
}

struct Subtract<'a>(&'a Outside);

impl Visit for Subtract<'_> {
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
            if let Some(less) = subtracted(word, CLAMPED_STAYS) {
                set_scratch(l, less);
                self.0.inside();
            }
        }
    }
}

/// The scratch word `word` with one reference from inside taken off, or
/// `None` if it stays: at zero (only a broken `Trace` gets there), or clamped
/// if `clamped_stays` (see [`CLAMPED_STAYS`]).
#[inline(always)]
fn subtracted(word: usize, clamped_stays: bool) -> Option<usize> {
    let refs = word >> SHIFT;
    (refs > 0 && !(clamped_stays && refs == MAX_REFS)).then(|| word - (1 << SHIFT))
}

/// Subtract one from `gc_refs` of the target of every edge inside the set.
/// Afterwards `gc_refs` is the number of references from outside the set.
///
/// # Safety
///
/// - `nodes` must be what `update_refs` returned.
unsafe fn subtract_refs(nodes: &[NonNull<Links>], outside: &Outside) {
    let mut visit = Subtract(outside);
    let mut tracer = Tracer { visit: &mut visit };
    // SAFETY: the objects are alive and unmodified since update_refs.
    walk::each(nodes, |node| unsafe { trace(node, &mut tracer) })
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
                trace_by(next, &mut Mark { work: &mut work });
            }
        }
    })
}

/// Runs the passes on the garbage list, on which the collector holds one
/// reference each, to find what finalizers resurrected (step d of
/// `collect`). Relinks the list if a `Trace` impl panics. Returns the
/// examined objects, in list order, for [`partition`].
///
/// # Safety
///
/// - `list` must be a well-formed list of live tracked objects, each held
///   once by the collector, none of which is in the middle of another
///   detection.
pub(crate) unsafe fn detect_garbage(
    list: &List,
    arena: &Bump,
) -> Result<Nodes, Box<dyn core::any::Any + Send>> {
    let run = core::panic::AssertUnwindSafe(|| {
        // SAFETY: forwarded from the caller; each pass's precondition is the
        // previous pass.
        unsafe {
            let outside = Outside::default();
            let nodes = update_refs(list, 1, &outside);
            subtract_refs(&nodes, &outside);
            if outside.get() > 0 {
                mark(&nodes, arena);
            }
            nodes
        }
    });
    std::panic::catch_unwind(run).inspect_err(|_| list.relink())
}

/// The passes of a collection of generations `0..=max_gen`, run on what
/// their suspects reach.
///
/// Garbage always contains a suspect and is reachable from one (see
/// `dirty`), so a collection needs to examine only the objects the suspects
/// reach within its generations. Those join the set as the search finds
/// them: each is unlinked from its list, set up, and traced in turn, an edge
/// to an object already set up subtracted, and an edge to one in the
/// generations not yet met making it join. Whatever the search does not reach
/// stays in its list untouched; references from it, as from older
/// generations, are outside references. A collection thus costs what its
/// garbage and the objects it points to cost, not what the generations hold:
/// the young objects still in use at a young collection, or the whole heap at
/// a full one.
///
/// Each suspect is taken with everything it reaches before the next one, so
/// objects allocated together (a pair whose handle was dropped) sit together
/// in `nodes`, and so in every later pass.
///
/// The search gives up on being selective once one suspect has led it to
/// more than `limit` objects. Following edges one object at a time waits on
/// memory where the walk of a list runs ahead of it (on a ring of a million
/// nodes it costs about 5 ns per object more), so a search that reaches a
/// large structure is better done the plain way. It then merges the clean
/// lists of the generations into `max_gen`'s, and the suspects not yet taken
/// into `max_gen`'s suspects, and takes in the rest by walking both
/// ([`update_and_subtract`]).
///
/// Returns the examined objects (see [`Search`]). If a `Trace` impl panics,
/// every object is filed back where its flags say (the merged ones as
/// `max_gen`) before the panic is returned.
///
/// # Safety
///
/// - The lists of `st` must be well formed, and no detection may be running.
pub(crate) unsafe fn search_from_suspects(
    st: &State,
    max_gen: usize,
    limit: usize,
    spare: Option<Nodes>,
    arena: &Bump,
) -> Result<Search, Box<dyn core::any::Any + Send>> {
    let mut nodes = Nodes::recycle(spare);
    let mut all_garbage = false;
    // `nodes[..unlinked]` are in no list; the rest, in the merged lists.
    let mut unlinked = 0;
    let mut merged = false;
    let (whole, rest) = (st.clean(max_gen), st.suspects(max_gen));
    let run = core::panic::AssertUnwindSafe(|| {
        let outside = Outside::default();
        let mut traced = 0;
        let mut grow = Grow {
            st,
            max_gen,
            nodes: &mut nodes,
            sub: Subtract(&outside),
        };
        'seeds: for g in 0..=max_gen {
            let suspects = st.suspects(g);
            while let Some(seed) = suspects.first() {
                // SAFETY: a suspect is linked in its list with real links,
                // and not set up yet; it is taken out before its `prev`
                // becomes a scratch word, and set up at once.
                unsafe {
                    suspects.take_out(seed);
                    grow.sub.0.add(take_in(seed, 0));
                }
                grow.nodes.push(seed);
                unlinked = grow.nodes.len();
                // Everything this suspect reaches, before the next one: the
                // objects it was allocated with come next in `nodes`, and
                // every later pass walks `nodes` in that order.
                let start = traced;
                while traced < grow.nodes.len() {
                    if traced - start > limit {
                        break 'seeds;
                    }
                    let node = grow.nodes[traced];
                    if let Some(&ahead) = grow.nodes.get(traced + walk::AHEAD) {
                        walk::prefetch(ahead);
                    }
                    // SAFETY: a set-up object, alive and intact; `Grow` only
                    // unlinks objects that are in a list with real links.
                    unsafe { trace_by(node, &mut grow) };
                    traced += 1;
                    unlinked = grow.nodes.len();
                }
            }
        }
        if traced < nodes.len() {
            merged = true;
            for g in 0..max_gen {
                whole.append_all(st.clean(g));
                rest.append_all(st.suspects(g));
            }
            nodes.reserve_total(unlinked + whole.len() + rest.len());
            let mut lazy = SubtractLazily {
                max_gen,
                sub: Subtract(&outside),
            };
            let mut tracer = Tracer { visit: &mut lazy };
            for &node in &nodes[traced..unlinked] {
                // SAFETY: as above; `SubtractLazily` writes scratch words only.
                unsafe { trace(node, &mut tracer) };
            }
            // SAFETY: the two lists now hold every linked object of
            // generations 0 to `max_gen` that is not in `nodes`, and those in
            // `nodes` are set up.
            unsafe { update_and_subtract(whole, Some(rest), max_gen, &mut nodes, &outside) };
        }
        if outside.get() > 0 {
            // SAFETY: every examined object is set up and its edges
            // subtracted.
            unsafe { mark(&nodes, arena) };
        } else {
            all_garbage = true;
        }
    });
    match std::panic::catch_unwind(run) {
        Ok(()) => Ok(Search {
            nodes,
            merged,
            all_garbage,
        }),
        Err(payload) => {
            if merged {
                for list in [whole, rest] {
                    // SAFETY: the merged lists' `next` chains are intact; the
                    // objects of them the search took in are acquitted once,
                    // here, before relinking overwrites their scratch words.
                    unsafe { acquit_taken_in(list) };
                    list.relink();
                    list.each_header(|h| h.set_generation(max_gen));
                }
            }
            // Before the lists were merged, every object in `nodes` was taken
            // out of its list, including those a `Trace` that panicked had
            // already reported: `unlinked` was not updated for them.
            let unlinked = if merged { unlinked } else { nodes.len() };
            for &node in &nodes[..unlinked] {
                // SAFETY: an object the search took in, in no list, alive.
                // Acquitted, its flags are as they were, so filing it (which
                // overwrites its scratch word) puts it back in the list it
                // was taken from.
                unsafe {
                    acquit(node);
                    st.list_of(Header::from_links(node).as_ref())
                        .push_back(node)
                };
            }
            Err(payload)
        }
    }
}

/// Acquits the objects of `list` that the search took in.
///
/// # Safety
///
/// - `list`'s `next` chain must be intact and lead through live tracked
///   objects; those with a scratch word must have been taken in by the
///   search and not acquitted yet.
unsafe fn acquit_taken_in(list: &List) {
    let end = list.sentinel();
    let mut cur = list.first();
    while let Some(node) = cur.filter(|n| *n != end) {
        // SAFETY: forwarded from the caller; only `prev` and the header
        // change, so `next` is read before and stays valid.
        unsafe {
            let next = node.as_ref().next.get();
            if scratch(node.as_ref()) & COLLECTING != 0 {
                acquit(node);
            }
            cur = NonNull::new(next.cast_mut());
        }
    }
}

/// What [`search_from_suspects`] found.
pub(crate) struct Search {
    /// The examined objects, in the order the later passes walk them.
    pub(crate) nodes: Nodes,
    /// The lists of `max_gen` were merged and walked: the caller must
    /// `forget_all` both before [`partition`] or [`each_unreached`]. Otherwise
    /// every examined object is already in no list, and the objects not
    /// examined are still in their lists, with their own generation numbers.
    pub(crate) merged: bool,
    /// No examined object is referenced from outside the set, so none was
    /// reached: all of them are garbage, and [`each_unreached`] may stand in
    /// for [`partition`], or no walk at all.
    pub(crate) all_garbage: bool,
}

/// `update_refs` and `subtract_refs` in one walk, for a set that an object's
/// own header can tell it belongs to (the generations up to `max_gen`).
///
/// The two passes are separate in CPython because subtracting an edge needs
/// the target's `gc_refs` to be set up already, and the target may come later
/// in the list. Here a target met before its turn is set up on the spot (its
/// links say it is tracked, its generation number says it is in the set), so
/// the walk visits each object's memory once instead of twice: on a heap much
/// larger than the cache, one memory-bound pass fewer.
///
/// The objects of `list`, then those of `other`, are appended to `nodes`.
///
/// # Safety
///
/// - `list` and `other` must be distinct well-formed lists of live tracked
///   objects. With the objects already in `nodes` (set up and traced, or set
///   up and still to be traced), they must hold exactly the linked objects
///   whose generation number is at most `max_gen`.
unsafe fn update_and_subtract(
    list: &List,
    other: Option<&List>,
    max_gen: usize,
    nodes: &mut Nodes,
    outside: &Outside,
) {
    let mut visit = SubtractLazily {
        max_gen,
        sub: Subtract(outside),
    };
    let mut tracer = Tracer { visit: &mut visit };
    for list in [Some(list), other].into_iter().flatten() {
        let end = list.sentinel();
        let mut cur = list.first();
        while let Some(node) = cur.filter(|n| *n != end) {
            // SAFETY: forwarded from the caller: the `next` chain leads
            // through live tracked objects back to the sentinel, and only
            // `prev` is rewritten here; `Trace` reports live handles.
            unsafe {
                let l = node.as_ref();
                let next = l.next.get();
                if let Some(n) = NonNull::new(next.cast_mut()) {
                    walk::prefetch(n);
                }
                if scratch(l) & COLLECTING == 0 {
                    outside.add(take_in(node, 0));
                }
                nodes.push(node);
                trace(node, &mut tracer);
                cur = NonNull::new(next.cast_mut());
            }
        }
    }
}

/// Sets up the scratch word of an object joining the set: its strong count,
/// less `internal` references already known to come from inside the set.
/// Returns the `gc_refs` it stored.
///
/// # Safety
///
/// - `links` must belong to a live tracked object.
#[inline]
unsafe fn enter(links: NonNull<Links>, internal: usize) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe {
        let header = Header::from_links(links);
        let refs = gc_refs(header, internal);
        set_scratch(links.as_ref(), (refs << SHIFT) | COLLECTING);
        refs
    }
}

/// The object's strong count less `internal`, clamped to what the scratch
/// word holds.
///
/// # Safety
///
/// - `header` must belong to a live object.
#[inline(always)]
unsafe fn gc_refs(header: NonNull<Header>, internal: usize) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe { header.as_ref() }
        .strong(header)
        .saturating_sub(internal)
        .min(MAX_REFS)
}

/// [`enter`] for the search: the object is also condemned (see the module
/// docs), and its scratch word records what [`acquit`] restores.
///
/// # Safety
///
/// - `links` must belong to a live tracked object that is not set up yet.
#[inline]
unsafe fn take_in(links: NonNull<Links>, internal: usize) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe {
        let Some((count, was)) = Header::from_links(links).as_ref().try_condemn() else {
            return take_in_spilled(links, internal);
        };
        let refs = (count as usize).saturating_sub(internal).min(MAX_REFS);
        set_scratch(links.as_ref(), taken_in(refs, was));
        refs
    }
}

/// [`take_in`] for an object whose count is in the side table, or at the
/// largest the header holds. Out of line, so that the common path makes no
/// call and saves no registers.
///
/// # Safety
///
/// - As for [`take_in`].
#[cold]
#[inline(never)]
unsafe fn take_in_spilled(links: NonNull<Links>, internal: usize) -> usize {
    // SAFETY: forwarded from the caller.
    unsafe {
        let header = Header::from_links(links);
        // Read before the hold is added.
        let refs = gc_refs(header, internal);
        let was = header.as_ref().condemn(header);
        set_scratch(links.as_ref(), taken_in(refs, was));
        refs
    }
}

/// The scratch word of an object taken in with `refs`, whose flags were
/// `was` before it was condemned.
#[inline(always)]
fn taken_in(refs: usize, was: u32) -> usize {
    let mut word = (refs << SHIFT) | COLLECTING;
    if was & DIRTY == 0 {
        word |= WAS_CLEAN;
    }
    if was & WEAK_CLEARED != 0 {
        word |= HAD_CLEARED;
    }
    word
}

/// Undoes [`take_in`] on an object that is not garbage after all. Its
/// scratch word is still in `prev`, to be overwritten by the caller.
///
/// # Safety
///
/// - `links` must belong to a live object that [`take_in`] set up, acquitted
///   at most once.
#[inline]
unsafe fn acquit(links: NonNull<Links>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let word = scratch(links.as_ref());
        let header = Header::from_links(links);
        header
            .as_ref()
            .acquit(header, word & WAS_CLEAN != 0, word & HAD_CLEARED != 0);
    }
}

struct SubtractLazily<'a> {
    max_gen: usize,
    sub: Subtract<'a>,
}

/// What the visitors that set objects up as they meet them share: an edge to
/// an object already set up is subtracted, and `None` returned; so is `None`
/// for an object outside the set (unlinked, or older than `max_gen`), whose
/// edge is ignored. What remains is an object of the set met for the first
/// time, whose header is returned: its turn in the walk is still to come, or
/// the caller takes it now.
#[inline]
fn meet(sub: &mut Subtract<'_>, links: NonNull<Links>, max_gen: usize) -> Option<NonNull<Header>> {
    // SAFETY: reported by `Trace` from a live handle, so the object is
    // alive, and stays so for the collection.
    if scratch(unsafe { links.as_ref() }) & COLLECTING != 0 {
        sub.strong(links);
        return None;
    }
    met_first(links, max_gen)
}

/// The second half of [`meet`]: whether an object not set up is in the set.
#[inline]
fn met_first(links: NonNull<Links>, max_gen: usize) -> Option<NonNull<Header>> {
    // SAFETY: as in `meet`; a tracked box has a header after its links.
    let (l, header) = unsafe { (links.as_ref(), Header::from_links(links)) };
    // SAFETY: alive, as above.
    let in_set = !l.next.get().is_null() && unsafe { header.as_ref() }.generation() <= max_gen;
    in_set.then_some(header)
}

impl Visit for SubtractLazily<'_> {
    #[inline]
    fn strong(&mut self, links: NonNull<Links>) {
        // SAFETY: as in `meet`.
        if scratch(unsafe { links.as_ref() }) & COLLECTING != 0 {
            self.sub.strong(links);
        } else {
            self.take_in_first(links);
        }
    }
}

impl SubtractLazily<'_> {
    /// The first edge from inside to an object not set up yet. Out of line,
    /// so that the other edge, a subtraction, saves no registers: in a list
    /// linked both ways every object has one edge of each kind.
    #[inline(never)]
    fn take_in_first(&mut self, links: NonNull<Links>) {
        if met_first(links, self.max_gen).is_some() {
            // SAFETY: alive (see `meet`), not set up. This edge is the first
            // from inside.
            self.sub.0.add(unsafe { take_in(links, 1) });
        }
    }
}

/// The edge visitor of [`search_from_suspects`] while it is selective: what
/// it meets is taken at once, out of its list.
struct Grow<'a, 'b> {
    st: &'a State,
    max_gen: usize,
    nodes: &'a mut Nodes,
    sub: Subtract<'b>,
}

impl Visit for Grow<'_, '_> {
    #[inline]
    fn strong(&mut self, links: NonNull<Links>) {
        let Some(header) = meet(&mut self.sub, links, self.max_gen) else {
            return;
        };
        // SAFETY: alive (see `meet`); linked and not set up, so it is in the
        // list its flags name, with real links (only set-up objects hold
        // scratch words, and while the search is selective they are in no
        // list). This edge is the first from inside.
        unsafe {
            // Its neighbour in the list was most likely allocated with it,
            // and is most likely what tracing it finds next: start on that
            // object's lines now, as the walk of a list does.
            if let Some(next) = NonNull::new(links.as_ref().next.get().cast_mut()) {
                walk::prefetch(next);
            }
            self.st.list_of(header.as_ref()).take_out(links);
            self.sub.0.add(take_in(links, 1));
        }
        self.nodes.push(links);
    }
}

/// Where [`partition`] files the objects it examined.
pub(crate) struct Filing<'a> {
    /// The reached objects that are clean, with generation number
    /// `reached_gen`.
    pub(crate) reached_to: &'a List,
    /// The reached objects that stay `DIRTY`.
    pub(crate) suspects_to: &'a List,
    pub(crate) reached_gen: usize,
    /// The unreached objects, or no list if `None`.
    pub(crate) unreached_to: Option<&'a List>,
    /// The `DIRTY` marks of the reached objects go: the caller examined
    /// every generation, or every object a suspect reaches, so "reached"
    /// means reachable from outside the heap or from a frozen object (which
    /// is marked when it is unfrozen), and whatever they lost before no
    /// longer matters. Otherwise a reached object may owe its survival to an
    /// older object that is itself garbage, and must stay suspect (see
    /// `dirty`).
    pub(crate) clear_dirty: bool,
    /// The objects come from [`search_from_suspects`], which condemned them
    /// all; the reached ones are acquitted first. The unreached ones keep the
    /// collector's reference and the marks.
    pub(crate) taken_in: bool,
}

/// Files the examined objects as `to` says, and restores real `prev`
/// pointers. Leaves in `nodes` only the unreached objects, in their new list
/// order, and calls `on_unreached` on each of them (so that the caller's
/// first walk over the garbage costs no extra pass over memory); their flags
/// are the caller's to set. Returns how many objects were reached, and
/// whether `on_unreached` returned `true` for any object.
///
/// # Safety
///
/// - `detect_garbage` (with `taken_in` false) or `search_from_suspects` (with
///   `taken_in` true) must have succeeded and returned `nodes`; no user code
///   may have run since.
/// - No examined object may be in a list any more: the list they were
///   examined in was emptied with `forget_all`, or they were unlinked.
/// - The destination lists must be well formed. Unreached objects left in no
///   list must be linked again, or destroyed, before the collection ends.
/// - `on_unreached` must not free the object or touch its links.
pub(crate) unsafe fn partition(
    nodes: &mut Nodes,
    to: Filing<'_>,
    mut on_unreached: impl FnMut(NonNull<Header>, &Header) -> bool,
) -> (usize, bool) {
    let mut reached = 0;
    let mut kept = 0;
    let mut any = false;
    for i in 0..nodes.len() {
        let node = nodes[i];
        if let Some(&ahead) = nodes.get(i + walk::AHEAD) {
            walk::prefetch(ahead);
        }
        // SAFETY: examined objects are alive and in no list; each is pushed
        // exactly once, which overwrites the scratch word with a real `prev`.
        unsafe {
            let h = Header::from_links(node);
            let header = h.as_ref();
            if scratch(node.as_ref()) & REACHED != 0 {
                reached += 1;
                if to.taken_in {
                    acquit(node);
                }
                header.set_generation(to.reached_gen);
                if to.clear_dirty {
                    // Stays dirty if its count does not fit beside the
                    // clean mark; it is then filed as a suspect below.
                    header.try_clean();
                }
                if header.has(DIRTY) {
                    to.suspects_to.push_back(node);
                } else {
                    to.reached_to.push_back(node);
                }
            } else {
                match to.unreached_to {
                    Some(to) => to.push_back(node),
                    None => {
                        let l = node.as_ref();
                        l.next.set(ptr::null());
                        l.prev.set(ptr::null());
                    }
                }
                nodes[kept] = node;
                kept += 1;
                any |= on_unreached(h, header);
            }
        }
    }
    nodes.truncate(kept);
    (reached, any)
}

/// [`partition`] for a search that reached nothing: every examined object
/// is garbage, so there is nothing to file and no mark to test. Restores
/// null links (the garbage is left in no list) and calls `on_unreached` on
/// each object, in order; returns whether it returned `true` for any.
///
/// The caller needs this walk only when it has something to do for each
/// object before any value is dropped (user code may have to run); otherwise
/// the destruction walk does the rest object by object.
///
/// # Safety
///
/// - As for [`partition`], and the search must have reported `all_garbage`.
pub(crate) unsafe fn each_unreached(
    nodes: &[NonNull<Links>],
    mut on_unreached: impl FnMut(NonNull<Header>, &Header) -> bool,
) -> bool {
    let mut any = false;
    walk::each(nodes, |node| {
        // SAFETY: examined objects are alive and in no list; the scratch word
        // is overwritten once, here.
        unsafe {
            let l = node.as_ref();
            debug_assert_eq!(scratch(l) & REACHED, 0, "a reached object in all-garbage");
            l.next.set(ptr::null());
            l.prev.set(ptr::null());
            let h = Header::from_links(node);
            any |= on_unreached(h, h.as_ref());
        }
    });
    any
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
    let mut tracer = Tracer {
        visit: &mut WeakScan,
    };
    // SAFETY: forwarded from the caller; this visitor writes no scratch word.
    walk::each(nodes, |node| unsafe { trace(node, &mut tracer) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gc;
    use core::cell::RefCell;

    /// What an edge from inside the set does to its target's scratch word:
    /// one reference less, and one less in the sum of outside references.
    #[test]
    fn subtraction_takes_one_reference_off() {
        let a = Gc::new(RefCell::new(None::<Gc<u64>>));
        // SAFETY: `a` is a live tracked object; its `prev` link is put back
        // below, before anything reads it as a pointer.
        let (links, l) = unsafe {
            let links = Header::links(a.header_ptr_for_test());
            (links, links.as_ref())
        };
        let saved = l.prev.get();
        let outside = Outside(Cell::new(10));
        for (before, after, sum) in [(5, 4, 9), (1, 0, 8)] {
            set_scratch(l, (before << SHIFT) | COLLECTING | WAS_CLEAN);
            Subtract(&outside).strong(links);
            assert_eq!(scratch(l), (after << SHIFT) | COLLECTING | WAS_CLEAN);
            assert_eq!(outside.get(), sum);
        }
        l.prev.set(saved);
    }

    /// Where a clamped count could be subtracted to zero (32-bit targets) it
    /// stays clamped; zero stays zero everywhere.
    #[test]
    fn a_clamped_count_stays_where_it_could_reach_zero() {
        let word = |refs: usize| (refs << SHIFT) | COLLECTING | HAD_CLEARED;
        for stays in [false, true] {
            assert_eq!(subtracted(word(0), stays), None);
            assert_eq!(subtracted(word(3), stays), Some(word(2)));
            assert_eq!(
                subtracted(word(MAX_REFS - 1), stays),
                Some(word(MAX_REFS - 2))
            );
        }
        assert_eq!(subtracted(word(MAX_REFS), true), None);
        assert_eq!(subtracted(word(MAX_REFS), false), Some(word(MAX_REFS - 1)));
    }
}
