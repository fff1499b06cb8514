//! The counterpart of Python's `gc` module: switches, thresholds, counts,
//! statistics, freezing and collection callbacks for this thread's heap.

use core::fmt;
use std::rc::Rc;

use crate::collector::{collect, state};
use crate::header::{Header, PERMANENT};

/// Collects every generation (a full collection, `gc.collect()`) and returns
/// the number of unreachable objects found.
///
/// Works even when automatic collection is [disabled](disable). Returns 0 at
/// once when called while a collection is already running on this thread (from
/// a finalizer, a weak callback, a collection callback or a `Drop`).
///
/// # Panics
///
/// If user code run by the collection panics (a `Trace` impl, a finalizer, a
/// weak or collection callback, a `Drop`), the collection still completes with
/// the heap consistent, and the first such panic is then re-raised here.
///
/// ```
/// use std::cell::RefCell;
/// use gencc::{Gc, Trace};
///
/// #[derive(Trace)]
/// struct Node(RefCell<Option<Gc<Node>>>);
///
/// let n = Gc::new(Node(RefCell::new(None)));
/// *n.0.borrow_mut() = Some(n.clone());
/// drop(n);
/// assert_eq!(gencc::collect(), 1);
/// assert_eq!(gencc::collect(), 0);
/// ```
pub fn collect() -> usize {
    collect::collect_generation(state(), 2, true)
}

/// Collects generation `generation` and all younger ones
/// (`gc.collect(generation)`); survivors move to the next older generation.
///
/// # Errors
///
/// [`InvalidGeneration`] unless `generation` is 0, 1 or 2.
///
/// ```
/// assert_eq!(gencc::collect_generation(0), Ok(0));
/// assert!(gencc::collect_generation(3).is_err());
/// ```
pub fn collect_generation(generation: usize) -> Result<usize, InvalidGeneration> {
    if generation > 2 {
        return Err(InvalidGeneration(generation));
    }
    Ok(collect::collect_generation(state(), generation, true))
}

/// The error of [`collect_generation`] for a generation other than 0, 1, 2.
///
/// ```
/// let e = gencc::collect_generation(7).unwrap_err();
/// assert_eq!(e.to_string(), "invalid generation 7: expected 0, 1 or 2");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidGeneration(pub usize);

impl fmt::Display for InvalidGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid generation {}: expected 0, 1 or 2", self.0)
    }
}

impl std::error::Error for InvalidGeneration {}

/// Turns automatic collection on (`gc.enable()`).
///
/// ```
/// gencc::disable();
/// gencc::enable();
/// assert!(gencc::is_enabled());
/// ```
pub fn enable() {
    state().enabled.set(true);
}

/// Turns automatic collection off (`gc.disable()`). Reference counting and
/// explicit [`collect`] calls still work.
///
/// ```
/// gencc::disable();
/// assert!(!gencc::is_enabled());
/// gencc::enable();
/// ```
pub fn disable() {
    state().enabled.set(false);
}

/// Whether automatic collection is on (`gc.isenabled()`).
///
/// ```
/// assert!(gencc::is_enabled()); // on by default
/// ```
pub fn is_enabled() -> bool {
    state().enabled.get()
}

/// The thresholds of generations 0, 1 and 2 (`gc.get_threshold()`); by
/// default `[700, 10, 10]`.
///
/// ```
/// assert_eq!(gencc::thresholds(), [700, 10, 10]);
/// ```
pub fn thresholds() -> [usize; 3] {
    state().thresholds.each_ref().map(|c| c.get())
}

/// Sets the thresholds (`gc.set_threshold(t0, t1, t2)`). A `threshold0` of
/// 0 disables automatic collection, as in CPython.
///
/// ```
/// gencc::set_thresholds(1000, 20, 20);
/// assert_eq!(gencc::thresholds(), [1000, 20, 20]);
/// gencc::set_thresholds(700, 10, 10);
/// ```
pub fn set_thresholds(threshold0: usize, threshold1: usize, threshold2: usize) {
    let st = state();
    for (cell, t) in st
        .thresholds
        .iter()
        .zip([threshold0, threshold1, threshold2])
    {
        cell.set(t);
    }
}

/// The collection counts (`gc.get_count()`): net tracked allocations since
/// the last collection, then the collections of generations 0 and 1 since the
/// last collection of the next generation.
///
/// ```
/// use std::cell::RefCell;
/// use gencc::Gc;
/// gencc::collect();
/// let before = gencc::count()[0];
/// let _tracked = Gc::new(RefCell::new(Vec::<Gc<u8>>::new()));
/// let _untracked = Gc::new(5u8); // never counts
/// assert_eq!(gencc::count()[0], before + 1);
/// ```
pub fn count() -> [usize; 3] {
    state().counts.each_ref().map(|c| c.get())
}

/// Moves every tracked object into the permanent generation (`gc.freeze()`),
/// where collections never look, and resets the counts.
///
/// ```
/// use std::cell::RefCell;
/// use gencc::Gc;
/// let n = Gc::new(RefCell::new(Vec::<Gc<u8>>::new()));
/// gencc::freeze();
/// assert_eq!(gencc::freeze_count(), 1);
/// assert_eq!(Gc::generation(&n), Some(gencc::Generation::Permanent));
/// gencc::unfreeze();
/// assert_eq!(gencc::freeze_count(), 0);
/// ```
pub fn freeze() {
    let st = state();
    for g in 0..=2 {
        st.clean(PERMANENT).take_all_as(st.clean(g), PERMANENT);
        st.suspects(PERMANENT)
            .take_all_as(st.suspects(g), PERMANENT);
    }
    for c in &st.counts {
        c.set(0);
    }
}

/// Moves the permanent generation back into generation 2 (`gc.unfreeze()`).
///
/// Every object brought back becomes a suspect (see `collector::dirty`): even a
/// full collection counted references from frozen objects as outside ones, so
/// none of them is known to be reachable any more.
///
/// ```
/// gencc::freeze();
/// gencc::unfreeze();
/// assert_eq!(gencc::freeze_count(), 0);
/// ```
pub fn unfreeze() {
    let st = state();
    st.clean(PERMANENT).each_header(Header::set_dirty);
    st.suspects(2).take_all_as(st.clean(PERMANENT), 2);
    st.suspects(2).take_all_as(st.suspects(PERMANENT), 2);
}

/// The number of objects in the permanent generation
/// (`gc.get_freeze_count()`).
///
/// ```
/// assert_eq!(gencc::freeze_count(), 0);
/// ```
pub fn freeze_count() -> usize {
    state().gen_len(PERMANENT)
}

/// Statistics of one generation since the thread started
/// (`gc.get_stats()[n]`).
///
/// ```
/// let before = gencc::stats()[2].collections;
/// gencc::collect();
/// assert_eq!(gencc::stats()[2].collections, before + 1);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenerationStats {
    /// Collections of this generation (including the younger ones merged
    /// into it).
    pub collections: usize,
    /// Unreachable objects found by those collections.
    pub collected: usize,
    /// Objects found unreachable but kept. Always 0: gencc has no equivalent
    /// of CPython's legacy `tp_del` finalizers, which are the only source of
    /// uncollectable objects in 3.11.
    pub uncollectable: usize,
}

/// Per-generation statistics (`gc.get_stats()`). A collection of generation
/// `n` updates entry `n` only.
///
/// ```
/// let s = gencc::stats();
/// assert_eq!(s.len(), 3);
/// ```
pub fn stats() -> [GenerationStats; 3] {
    state().stats.each_ref().map(|c| c.get())
}

/// A generation, as reported by [`Gc::generation`](crate::Gc::generation).
///
/// ```
/// assert_eq!(gencc::Generation::Middle.index(), Some(1));
/// assert_eq!(gencc::Generation::Permanent.index(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Generation {
    /// Generation 0, where new tracked objects start.
    Young,
    /// Generation 1.
    Middle,
    /// Generation 2, the oldest.
    Old,
    /// The permanent set made by [`freeze`].
    Permanent,
}

impl Generation {
    /// The generation's number, as `collect_generation` takes it; `None` for
    /// the permanent set.
    pub fn index(self) -> Option<usize> {
        match self {
            Generation::Young => Some(0),
            Generation::Middle => Some(1),
            Generation::Old => Some(2),
            Generation::Permanent => None,
        }
    }
}

/// Whether `gc`'s object is tracked by the collector (`gc.is_tracked(obj)`).
/// Same as [`Gc::is_tracked`](crate::Gc::is_tracked).
///
/// ```
/// use std::cell::RefCell;
/// use gencc::Gc;
/// assert!(!gencc::is_tracked(&Gc::new(1u64)));
/// assert!(gencc::is_tracked(&Gc::new(RefCell::new(None::<Gc<u8>>))));
/// ```
pub fn is_tracked<T: crate::Trace + 'static>(gc: &crate::Gc<T>) -> bool {
    crate::Gc::is_tracked(gc)
}

/// Whether a collection callback is called before or after the collection.
///
/// ```
/// assert_ne!(gencc::Phase::Start, gencc::Phase::Stop);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Before the collection; the counts in the info are 0.
    Start,
    /// After the collection.
    Stop,
}

/// What a collection callback is told (`gc.callbacks`' `info` dict).
///
/// ```
/// let info = gencc::CollectionInfo {
///     phase: gencc::Phase::Stop, generation: 2, collected: 3, uncollectable: 0,
/// };
/// assert_eq!(info.collected, 3);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CollectionInfo {
    /// Start or stop.
    pub phase: Phase,
    /// The generation collected (younger ones are merged into it).
    pub generation: usize,
    /// Unreachable objects found (0 at start).
    pub collected: usize,
    /// Always 0; see [`GenerationStats::uncollectable`].
    pub uncollectable: usize,
}

/// Identifies a registered collection callback.
///
/// ```
/// let id = gencc::register_callback(|_| {});
/// assert!(gencc::unregister_callback(id));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallbackId(u64);

/// Registers `callback` to be called at the start and the stop of every
/// collection on this thread, automatic or explicit (`gc.callbacks.append`).
/// Callbacks run in registration order. The final collection at thread exit
/// calls none, as CPython's shutdown collection calls none.
///
/// A panic in a callback does not stop the collection; it is re-raised after
/// it, from the call that started the collection.
///
/// ```
/// use std::{cell::RefCell, rc::Rc};
/// use gencc::{Phase, CollectionInfo};
///
/// let seen = Rc::new(RefCell::new(Vec::new()));
/// let s = seen.clone();
/// let id = gencc::register_callback(move |info: &CollectionInfo| s.borrow_mut().push(info.phase));
/// gencc::collect();
/// gencc::unregister_callback(id);
/// assert_eq!(*seen.borrow(), [Phase::Start, Phase::Stop]);
/// ```
pub fn register_callback(callback: impl Fn(&CollectionInfo) + 'static) -> CallbackId {
    let st = state();
    let id = CallbackId(st.next_callback_id.get());
    st.next_callback_id.set(id.0 + 1);
    st.callbacks.borrow_mut().insert(id, Rc::new(callback));
    id
}

/// Removes a callback registered with [`register_callback`]. Returns whether
/// it was registered.
///
/// ```
/// let id = gencc::register_callback(|_| {});
/// assert!(gencc::unregister_callback(id));
/// assert!(!gencc::unregister_callback(id));
/// ```
pub fn unregister_callback(id: CallbackId) -> bool {
    // Removed outside the borrow: dropping the closure may run user code.
    let removed = state().callbacks.borrow_mut().shift_remove(&id);
    removed.is_some()
}

/// Debug flag: log one line when each collection starts and one when it ends
/// (`gc.DEBUG_STATS`), through the `log` crate at level `info`, target
/// `"gencc"`.
pub const DEBUG_STATS: u32 = 1;

/// Sets the debug flags (`gc.set_debug`).
///
/// ```
/// gencc::set_debug(gencc::DEBUG_STATS);
/// assert_eq!(gencc::debug(), gencc::DEBUG_STATS);
/// gencc::set_debug(0);
/// ```
pub fn set_debug(flags: u32) {
    state().debug.set(flags);
}

/// The debug flags (`gc.get_debug`).
///
/// ```
/// assert_eq!(gencc::debug(), 0);
/// ```
pub fn debug() -> u32 {
    state().debug.get()
}
