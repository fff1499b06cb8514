//! One collection, in CPython 3.11's order.
//!
//! 1. Find the objects of the generations being collected that are not
//!    reachable from outside them ([`passes`]), examining only what their
//!    suspects reach (see `dirty`). CPython merges the generations first and
//!    walks them all.
//! 2. Promote the survivors, and the objects the search never reached, into
//!    the next generation before any user code runs, so that what user code
//!    allocates or keeps alive from here on is judged by the next collection,
//!    not this one.
//! 3. Destroy the garbage, in the order PEP 442 fixes:
//!    - a. clear every weak reference to it (done by the search of step 1
//!      on everything it examines, and undone on what survives);
//!    - b. run the callbacks of the weak references that are not garbage
//!      themselves, only once all are cleared, so no callback can reach
//!      garbage through a weak reference;
//!    - c. run finalizers, each at most once per object lifetime, while every
//!      garbage object is still intact;
//!    - d. if any finalizer ran, detect resurrection by running the passes
//!      again on the garbage alone: what is now referenced from outside, and
//!      all it reaches, survives;
//!    - e. drop the values of the rest, then free them.
//!
//! The collector holds one strong reference to each garbage object, taken
//! by the search of step 1 (see `passes`), so that user code (callbacks,
//! finalizers, `Drop`) can never free an object the collector is still
//! walking. Each garbage object is marked dropped before its value is
//! dropped; all of them before the first value is, when something survived
//! or the thread has finalizers or weak callbacks (then a walk over the
//! garbage comes before step e anyway). A `Drop` that reaches a peer in the
//! same garbage thus finds
//! it intact (its turn has not come) or dropped, in which case dereferencing
//! it panics with a clear message: never a dangling read. CPython's
//! `tp_clear`, run on one garbage object after another, leaves its peers
//! cleared or not in the same way.
//!
//! User code that panics does not stop the collection: the panic is caught,
//! the collection finishes with the heap consistent, and the first panic is
//! re-raised to whoever started the collection.

use core::any::Any;
use core::ptr::NonNull;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;

use bumpalo::collections::Vec as BumpVec;
use bumpalo::Bump;
use smallvec::SmallVec;

use super::list::List;
use super::nodes::Nodes;
use super::{passes, trashcan, trigger, walk, State};
use crate::control::{CollectionInfo, Phase, DEBUG_STATS};
use crate::header::{Header, Links, DROPPED, FINALIZED, HAS_CALLBACKS, PERMANENT};
use crate::weak::Registration;

/// Collects generation `gen` (0..=2) and everything younger. Returns the
/// number of unreachable objects found, or 0 at once if a collection is
/// already running on this thread.
pub(crate) fn collect_generation(st: &State, gen: usize, with_callbacks: bool) -> usize {
    if st.collecting.get() {
        return 0;
    }
    st.collecting.set(true);
    let _running = Running(st);
    let mut panics = Panics(None);
    if with_callbacks {
        invoke_callbacks(st, Phase::Start, gen, 0, &mut panics);
    }
    let started = (st.debug.get() & DEBUG_STATS != 0).then(|| {
        log::info!(
            target: "gencc",
            "collecting generation {gen}; objects in each generation: {} {} {}, frozen: {}",
            st.gen_len(0),
            st.gen_len(1),
            st.gen_len(2),
            st.gen_len(PERMANENT)
        );
        std::time::Instant::now()
    });

    if gen < 2 {
        st.counts[gen + 1].set(st.counts[gen + 1].get() + 1);
    }
    for c in &st.counts[..=gen] {
        c.set(0);
    }
    let old_gen = (gen + 1).min(2);
    let old = st.clean(old_gen);
    let clean = (0..=gen).all(|g| st.suspects(g).is_empty());
    let arena = st.arena.take().unwrap_or_default();
    let found = if clean {
        // Nothing here lost a reference since it was last examined, so the
        // passes would find everything reachable (see `dirty`): promote.
        let mut promoted = 0;
        for g in (0..=gen).filter(|&g| g != old_gen) {
            promoted += st.clean(g).len();
            old.take_all_as(st.clean(g), old_gen);
        }
        record_promotion(st, gen, st.gen_len(old_gen), promoted);
        0
    } else {
        let spare = spare_nodes(st, gen);
        let limit = ((0..=gen).map(|g| st.gen_len(g)).sum::<usize>() / FOCUS).max(FOCUS_MIN);
        // SAFETY: the lists are well formed and no other detection is
        // running (`collecting` was clear).
        let examined = unsafe { passes::search_from_suspects(st, gen, limit, spare, &arena) };
        match &examined {
            Ok(search) => {
                if search.merged {
                    st.clean(gen).forget_all();
                    st.suspects(gen).forget_all();
                }
            }
            // Everything is back in its list. A failed collection leaves its
            // generations merged, whichever way it searched.
            Err(_) => {
                for g in 0..gen {
                    st.clean(gen).take_all_as(st.clean(g), gen);
                    st.suspects(gen).take_all_as(st.suspects(g), gen);
                }
            }
        }
        match examined {
            Err(payload) => {
                panics.keep(payload);
                0
            }
            Ok(passes::Search {
                nodes: mut examined,
                all_garbage,
                ..
            }) => {
                // The search took the hold and did (a) on everything it
                // examined; the partition gives back what survives. Most
                // garbage has neither weak callbacks nor finalizers; then no
                // user code runs before the values are dropped, and the
                // objects can be marked for (e) at once. Otherwise
                // `destroy_garbage` lifts `DROPPED` while user code runs.
                //
                // When everything examined is garbage and no object of this
                // thread can have user code to run, no walk is needed before
                // the destruction, which marks each object as it comes to it.
                let finalizable = st.finalizable.get();
                let user_code_possible = finalizable
                    || st
                        .registrations
                        .try_borrow()
                        .map_or(true, |r| !r.is_empty());
                let sentence = |p: NonNull<Header>, h: &Header| sentence(p, h, finalizable);
                // The garbage is left in no list: destroying it needs only
                // the array, and user code, when there is some, needs the
                // garbage list, which is then built (`destroy_garbage`).
                // SAFETY: detection succeeded, nothing ran since, and every
                // examined object is in no list; `sentence` neither frees
                // nor unlinks.
                let (mut survivors, user_code) = unsafe {
                    if !all_garbage {
                        passes::partition(
                            &mut examined,
                            passes::Filing {
                                reached_to: old,
                                suspects_to: st.suspects(old_gen),
                                reached_gen: old_gen,
                                unreached_to: None,
                                clear_dirty: gen == 2,
                                taken_in: true,
                            },
                            sentence,
                        )
                    } else if user_code_possible {
                        (0, passes::each_unreached(&examined, sentence))
                    } else {
                        (0, false)
                    }
                };
                // What the search did not reach is alive: it is promoted
                // with the examined survivors, and counts with them.
                for g in (0..=gen).filter(|&g| g != old_gen) {
                    survivors += st.clean(g).len();
                    old.take_all_as(st.clean(g), old_gen);
                }
                record_promotion(st, gen, st.gen_len(old_gen), survivors);
                let found =
                    destroy_garbage(st, old_gen, &mut examined, user_code, &arena, &mut panics);
                st.spare_nodes.set(Some(examined));
                found
            }
        }
    };
    recycle_arena(st, arena);

    let s = &st.stats[gen];
    let mut stats = s.get();
    stats.collections += 1;
    stats.collected += found;
    s.set(stats);
    if let Some(t) = started {
        log::info!(
            target: "gencc",
            "done, {found} unreachable, 0 uncollectable, {:.4}s elapsed",
            t.elapsed().as_secs_f64()
        );
    }
    if with_callbacks {
        invoke_callbacks(st, Phase::Stop, gen, found, &mut panics);
    }
    drop(_running);
    if let Some(payload) = panics.0 {
        resume_unwind(payload);
    }
    found
}

/// A collection searches from the suspects (see
/// `passes::search_from_suspects`) and stays selective while what one
/// suspect reaches is at most one object in `FOCUS` of the generations it
/// collects, or `FOCUS_MIN` objects. Past that, following edges one object
/// at a time costs more than the plain walk of every list that it saves.
///
/// Invariant: any values are correct (the garbage found is the same); a
/// larger `FOCUS` gives up sooner on large structures, a smaller one pays
/// more per object before giving up. `FOCUS_MIN` keeps a search of small
/// generations selective for the smallest structures (a pair, a triangle)
/// instead of giving up at once; it also lets the model test, whose heaps
/// are small, exercise both ways of searching (measured: of 10,800 searches
/// in 3,000 cases, about 60 % stayed selective).
const FOCUS: usize = 64;
const FOCUS_MIN: usize = 2;

/// The array of the last collection, for this one. A full collection lets it
/// go if the heap has shrunk far below it (see `nodes`).
fn spare_nodes(st: &State, gen: usize) -> Option<Nodes> {
    let spare = st.spare_nodes.take()?;
    let objects = || (0..=PERMANENT).map(|g| st.gen_len(g)).sum();
    (gen < 2 || spare.worth_keeping(objects())).then_some(spare)
}

/// The long-lived rule's bookkeeping: what a collection of `gen` promoted
/// (`survivors`), and generation 2's size after a full one (`old_len`).
fn record_promotion(st: &State, gen: usize, old_len: usize, survivors: usize) {
    if gen == 1 {
        st.long_lived_pending
            .set(st.long_lived_pending.get() + survivors);
    } else if gen == 2 {
        st.long_lived_pending.set(0);
        st.long_lived_total.set(old_len);
    }
}

/// Clears the re-entrancy flag however the collection ends.
struct Running<'a>(&'a State);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.collecting.set(false);
    }
}

/// The first panic raised by user code during the collection.
struct Panics(Option<Box<dyn Any + Send>>);

impl Panics {
    fn keep(&mut self, payload: Box<dyn Any + Send>) {
        // Later panics are dropped: only one can be re-raised.
        self.0.get_or_insert(payload);
    }

    fn run(&mut self, f: impl FnOnce()) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
            self.keep(payload);
        }
    }
}

fn invoke_callbacks(st: &State, phase: Phase, gen: usize, collected: usize, panics: &mut Panics) {
    // A snapshot, so callbacks may register and unregister callbacks.
    let callbacks: Vec<_> = st.callbacks.borrow().values().cloned().collect();
    let info = CollectionInfo {
        phase,
        generation: gen,
        collected,
        uncollectable: 0,
    };
    for cb in callbacks {
        panics.run(|| cb(&info));
    }
}

fn recycle_arena(st: &State, mut arena: Box<Bump>) {
    // Keep the scratch memory of ordinary collections; give back what a huge
    // one needed rather than hold it for the thread's lifetime.
    if arena.allocated_bytes() <= 1 << 20 {
        arena.reset();
        st.arena.set(Some(arena));
    }
}

/// Calls `f` on the header of every object of `list`, as a pointer with the
/// provenance of the whole allocation. `f` must not unlink.
fn each(list: &List, mut f: impl FnMut(NonNull<Header>, &Header)) {
    let mut cur = list.first();
    while let Some(node) = cur {
        // SAFETY: linked nodes are live tracked objects, and `f` does not
        // unlink, so `next_of` stays valid.
        unsafe {
            let h = Header::from_links(node);
            f(h, h.as_ref());
            cur = list.next_of(node);
        }
    }
}

/// Calls `f` on the header of every object of `nodes`, as a pointer with the
/// provenance of the whole allocation. `f` must not free the object.
fn each_node(nodes: &[NonNull<Links>], mut f: impl FnMut(NonNull<Header>, &Header)) {
    walk::each(nodes, |node| {
        // SAFETY: the nodes are links of live tracked objects, which `f`
        // does not free.
        unsafe {
            let h = Header::from_links(node);
            f(h, h.as_ref());
        }
    });
}

/// The marks every garbage object carries before its value is dropped in
/// step (e). The search set two of them, with the collector's hold
/// ([`Header::condemn`]):
/// - `WEAK_CLEARED`: step (a), `Weak::upgrade` fails from the search on;
/// - `DIRTY`: garbage is never examined again, and it is in no list its
///   flags name (it sits in the array, or in the garbage list), so a handle
///   to it released by a dropped value or by user code must not make
///   `Gc::drop` file it as a suspect; with the mark already set it does not.
///
/// This sets the third, `DROPPED`: `Drop` code that reaches the object gets a
/// clear panic rather than a dropped value. Returns whether the object has
/// user code to run before its value is dropped: weak callbacks, or a
/// finalizer that has not run yet. `finalizable`: whether the thread ever
/// allocated an object with a finalizer (`State::finalizable`).
#[inline(always)]
fn sentence(p: NonNull<Header>, h: &Header, finalizable: bool) -> bool {
    h.set(DROPPED);
    h.has(HAS_CALLBACKS)
        || (finalizable
            // SAFETY: garbage is alive; the detection found it in the
            // collector's lists, so it is tracked.
            && unsafe { Header::vtable(p) }.finalize.is_some()
            && !h.has(FINALIZED))
}

/// Steps b to e for the objects `garbage` lists, which are in no list and on
/// which the collector already holds a reference, with weak references
/// cleared and the marks of [`sentence`] set, or about to be.
/// `user_code`: whether any of them has weak callbacks or a finalizer to run.
/// Returns how many were destroyed.
fn destroy_garbage(
    st: &State,
    old_gen: usize,
    garbage: &mut Nodes,
    user_code: bool,
    arena: &Bump,
    panics: &mut Panics,
) -> usize {
    let list = &st.unreachable;
    if garbage.is_empty() {
        return 0;
    }
    // The hold and step (a) were taken by the search.
    if user_code {
        // User code sees the garbage as tracked objects (`is_tracked`), as
        // before it was found; and step (d) runs the passes on it as a list.
        // The objects keep `DIRTY`, which any handle dropped now would give
        // them: with it set, such a drop leaves them where they are, in the
        // garbage list, instead of filing them as suspects.
        // SAFETY: the garbage is alive (held) and in no list.
        walk::each(garbage, |node| unsafe { list.push_back(node) });
        each_node(garbage, |_, h| h.clear(DROPPED));
        run_user_code(st, old_gen, garbage, arena, panics);
        each_node(garbage, |_, h| h.set(DROPPED));
    }

    // (e) Each object leaves the garbage list if it is in it (or gets null
    // links, from the scratch word and stale pointer the search left when no
    // walk came between), is marked `DROPPED` if it is not yet, its value is
    // dropped, and the collector's hold goes. Values dropped later may still
    // release handles to objects freed earlier: the hold guarantees those are
    // only freed once nothing refers to them, by the last such release.
    //
    // One `catch_unwind` covers the whole walk rather than each value: after
    // a panic the walk finishes the object whose value panicked and resumes
    // with the next one.
    let destroyed = garbage.len();
    trigger::on_deallocs(st, destroyed);
    // Only garbage that user code ran for was put in the garbage list.
    let in_list = user_code;
    let garbage: &[NonNull<Links>] = garbage;
    trashcan::scope(st, || {
        let mut next = 0;
        while next < garbage.len() {
            let mut current = next;
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                // Copied in, so that the loop keeps it in a register.
                let (in_list, list) = (in_list, list);
                for i in next..garbage.len() {
                    current = i;
                    if let Some(&ahead) = garbage.get(i + walk::AHEAD) {
                        walk::prefetch(ahead);
                    }
                    // SAFETY: each garbage object is held, marked `DROPPED`
                    // here at the latest (no handle dereferences its value
                    // any more), and visited once, so its value is dropped
                    // and the hold released exactly once, here. With
                    // `in_list`, a linked one is in `list` (the collector
                    // files garbage nowhere else), and only the collector
                    // unlinks it; otherwise no object is in a list.
                    unsafe {
                        let node = garbage[i];
                        let l = node.as_ref();
                        if in_list && !l.next.get().is_null() {
                            // `DIRTY` stays (see `sentence`): an unlinked
                            // object is never filed again, and handles
                            // released later skip `dirty::mark`.
                            list.remove(node);
                        } else {
                            l.next.set(core::ptr::null());
                            l.prev.set(core::ptr::null());
                        }
                        let h = Header::from_links(node);
                        h.as_ref().set(DROPPED);
                        (Header::vtable(h).drop_garbage)(h);
                    }
                }
            }));
            match outcome {
                Ok(()) => break,
                Err(payload) => {
                    panics.keep(payload);
                    // SAFETY: the value of `current` panicked while being
                    // dropped; the rest of its destruction is still to do.
                    unsafe { release_garbage(Header::from_links(garbage[current])) };
                    next = current + 1;
                }
            }
        }
    });
    destroyed
}

/// The end of step (e) for one garbage object whose value panicked while
/// being dropped: the collector's hold goes, and the memory with it if
/// nothing else holds it. (Otherwise the vtable's `drop_garbage` does this.)
///
/// # Safety
///
/// - `h` must be a held garbage object whose value was dropped, released
///   once.
#[cold]
unsafe fn release_garbage(h: NonNull<Header>) {
    // SAFETY: forwarded from the caller; the header is not borrowed across the
    // deallocation.
    unsafe {
        if h.as_ref().dec_strong(h) && h.as_ref().dec_weak(h) {
            Header::deallocate(h);
        }
    }
}

/// Steps b to d, for garbage with weak callbacks or finalizers: user code
/// runs, and may resurrect objects, which leave `garbage`.
fn run_user_code(
    st: &State,
    old_gen: usize,
    garbage: &mut Nodes,
    arena: &Bump,
    panics: &mut Panics,
) {
    let list = &st.unreachable;
    // (b)
    run_weak_callbacks(st, garbage, arena, panics);

    // (c) The set cannot change under user code: its objects are held, and
    // only the collector unlinks them.
    let mut finalized = false;
    each_node(garbage, |p, h| {
        // SAFETY: garbage is alive and tracked.
        if let Some(finalize) = unsafe { Header::vtable(p) }.finalize {
            if !h.has(FINALIZED) {
                h.set(FINALIZED);
                finalized = true;
                // SAFETY: the object is alive, held, and its value intact.
                panics.run(|| unsafe { finalize(p) });
            }
        }
    });
    if !finalized {
        return;
    }

    // (d)
    let resurrected = &st.resurrected;
    // SAFETY: the garbage list is well formed and its values intact; the
    // collector's hold is the `1` subtracted from every count.
    match unsafe { passes::detect_garbage(list, arena) } {
        // SAFETY: detection succeeded and nothing ran since.
        Ok(mut examined) => unsafe {
            list.forget_all();
            passes::partition(
                &mut examined,
                passes::Filing {
                    reached_to: resurrected,
                    suspects_to: resurrected,
                    reached_gen: old_gen,
                    unreached_to: Some(list),
                    // Marked and counted below, with the rest of the
                    // resurrected.
                    clear_dirty: true,
                    // Held already: the hold is given back below.
                    taken_in: false,
                },
                |_, _| false,
            );
            // `examined` now holds what is still garbage.
            *garbage = examined;
        },
        // A `Trace` panic leaves resurrection undecided: keep everything.
        Err(payload) => {
            panics.keep(payload);
            resurrected.take_all_as(list, old_gen);
            garbage.truncate(0);
        }
    }
    each(resurrected, |p, h| {
        // Cannot reach zero: a resurrected object is referenced from outside
        // the garbage or from another resurrected object. It is a loss of a
        // reference, so the object is dirty again.
        h.dec_strong(p);
        h.set_dirty();
    });
    st.suspects(old_gen).append_all(resurrected);
}

/// The registrations taken from one garbage object.
type Registrations = SmallVec<[Rc<Registration>; 1]>;

/// Step b. Takes the weak-callback registrations of every garbage object,
/// decides which registrations are garbage themselves, and runs the others.
fn run_weak_callbacks(st: &State, garbage: &[NonNull<Links>], arena: &Bump, panics: &mut Panics) {
    let mut batch: BumpVec<'_, (NonNull<Header>, Registrations)> = BumpVec::new_in(arena);
    each_node(garbage, |p, h| {
        if h.has(HAS_CALLBACKS) {
            if let Some(regs) = crate::weak::take_registrations(st, p) {
                for r in &regs {
                    r.begin_scan();
                }
                batch.push((p, regs));
            }
        }
    });
    if batch.is_empty() {
        return;
    }
    // A weak reference whose handles are all stored inside the garbage dies
    // with it: CPython skips the callbacks of such weakrefs, and so do we.
    // Counting those handles is one more trace of the garbage.
    // SAFETY: the garbage is alive, held and intact.
    panics.run(|| unsafe { passes::count_weak_handles(garbage) });
    for (object, regs) in batch.iter() {
        // Newest registration first, as CPython does for one referent.
        for r in regs.iter().rev() {
            let (callback, live) = r.end_scan();
            panics.run(move || match callback {
                Some(cb) if live => cb(*object),
                other => drop(other),
            });
        }
    }
    // Dropping the batch may drop registrations and their closures' captures:
    // user code too.
    panics.run(move || drop(batch));
}
