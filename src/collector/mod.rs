//! The per-thread heap: generations, triggers, and the collection itself.
//!
//! - [`list`]: the intrusive lists every generation is made of.
//! - [`passes`]: finding garbage by subtracting internal references.
//! - [`collect`]: one collection, from merging generations to freeing garbage.
//! - [`trigger`]: when automatic collections run (thresholds, long-lived rule).
//! - [`trashcan`]: stack-safe destruction of long chains.
//! - [`dirty`]: the suspects, which let collections that cannot find garbage
//!   skip the search, and the others search only what the suspects reach.
//! - [`nodes`]: the array of examined objects.
//! - [`walk`]: visiting the examined objects without waiting on memory.

pub(crate) mod collect;
pub(crate) mod dirty;
pub(crate) mod list;
pub(crate) mod nodes;
pub(crate) mod passes;
pub(crate) mod trashcan;
pub(crate) mod trigger;
pub(crate) mod walk;

use core::ptr::{self, NonNull};
use std::rc::Rc;

use bumpalo::Bump;
use indexmap::IndexMap;
use smallvec::SmallVec;

use self::list::List;
use crate::control::{CallbackId, CollectionInfo, GenerationStats};
use crate::header::{Header, PERMANENT};
use crate::primitive::cell::{Cell, RefCell};
use crate::primitive::thread_local;
use crate::weak::Registration;

/// Offset of the suspect lists in `State::lists`.
const SUSPECTS: usize = PERMANENT + 1;

/// A collection callback, as registered by the user.
pub(crate) type Callback = Rc<dyn Fn(&CollectionInfo)>;

/// Everything one thread's heap knows.
///
/// Only ever reached through a shared reference: user code (finalizers, weak
/// callbacks, `Drop`) runs in the middle of a collection and may call back into
/// the heap, so every field is a `Cell` or a short-lived `RefCell` borrow that
/// is never held across user code.
pub(crate) struct State {
    /// Every tracked object that is not in the middle of a collection, in
    /// eight lists indexed by [`Header::list_index`], so that a death finds
    /// its list without a branch: list `g` holds the clean objects of
    /// generation `g` (0, 1, 2, and 3 for the frozen ones), list `4 + g` its
    /// suspects, the objects marked `DIRTY` (see [`dirty`]). Keeping the
    /// suspects apart lets a collection start from them alone.
    lists: [List; 8],
    /// Scratch list: the garbage of the collection in progress.
    pub(crate) unreachable: List,
    /// Scratch list: garbage that a finalizer resurrected.
    pub(crate) resurrected: List,
    pub(crate) thresholds: [Cell<usize>; 3],
    /// `counts[0]`: tracked allocations minus deallocations since the last
    /// collection. `counts[1]`, `counts[2]`: collections of the next younger
    /// generation since the last collection of this one.
    pub(crate) counts: [Cell<usize>; 3],
    pub(crate) enabled: Cell<bool>,
    /// Re-entrancy guard: set for the whole of a collection.
    pub(crate) collecting: Cell<bool>,
    /// Size of generation 2 after the last full collection.
    pub(crate) long_lived_total: Cell<usize>,
    /// Objects promoted into generation 2 since the last full collection.
    pub(crate) long_lived_pending: Cell<usize>,
    pub(crate) stats: [Cell<GenerationStats>; 3],
    pub(crate) debug: Cell<u32>,
    pub(crate) callbacks: RefCell<IndexMap<CallbackId, Callback>>,
    pub(crate) next_callback_id: Cell<u64>,
    /// Weak-reference callbacks, keyed by the address of their referent's
    /// header, newest last.
    pub(crate) registrations: RefCell<IndexMap<usize, SmallVec<[Rc<Registration>; 1]>>>,
    /// Depth of nested object destructions; see [`trashcan`].
    pub(crate) trash_depth: Cell<usize>,
    /// Objects whose destruction was deferred to keep the stack flat.
    pub(crate) trash: RefCell<Vec<NonNull<Header>>>,
    /// Scratch memory of the collection in progress, reused between them.
    pub(crate) arena: Cell<Option<Box<Bump>>>,
    /// The array of examined objects of the last collection, kept for
    /// the next one (see [`nodes`]).
    pub(crate) spare_nodes: Cell<Option<nodes::Nodes>>,
    /// The thread is exiting and its exit guard has run: free the state as
    /// soon as it is empty (see [`reap`]).
    pub(crate) orphaned: Cell<bool>,
    /// `orphaned` is set or `trash` is not empty: the end of the outermost
    /// destruction has work to do. One flag, so that the common end of a
    /// death tests one byte.
    pub(crate) outermost_work: Cell<bool>,
    /// An object of a tracked type with a finalizer was allocated on this
    /// thread. Until then no garbage can have a finalizer to run, and a
    /// collection need not look each object's vtable up to know it.
    pub(crate) finalizable: Cell<bool>,
}

/// The default thresholds, CPython 3.11's: a young collection every 700 net
/// tracked allocations, a generation-1 collection every 10 young ones, and a
/// full one every 10 generation-1 ones (subject to the long-lived rule).
pub(crate) const DEFAULT_THRESHOLDS: [usize; 3] = [700, 10, 10];

impl State {
    /// Allocates a state and returns it as a raw pointer. The lists point to
    /// themselves, so they are initialised only once the state has its final
    /// address, through that same pointer.
    fn create() -> *const State {
        let st = Box::into_raw(Box::new(State {
            lists: [const { List::new() }; 8],
            unreachable: List::new(),
            resurrected: List::new(),
            thresholds: DEFAULT_THRESHOLDS.map(Cell::new),
            counts: [0; 3].map(Cell::new),
            enabled: Cell::new(true),
            collecting: Cell::new(false),
            long_lived_total: Cell::new(0),
            long_lived_pending: Cell::new(0),
            stats: [GenerationStats::default(); 3].map(Cell::new),
            debug: Cell::new(0),
            callbacks: RefCell::new(IndexMap::new()),
            next_callback_id: Cell::new(0),
            registrations: RefCell::new(IndexMap::new()),
            trash_depth: Cell::new(0),
            trash: RefCell::new(Vec::new()),
            arena: Cell::new(None),
            spare_nodes: Cell::new(None),
            orphaned: Cell::new(false),
            outermost_work: Cell::new(false),
            finalizable: Cell::new(false),
        }));
        // SAFETY: just allocated, and never moved again.
        for l in unsafe { &*st }.all_lists() {
            l.init();
        }
        st
    }

    fn all_lists(&self) -> impl Iterator<Item = &List> {
        self.lists
            .iter()
            .chain([&self.unreachable, &self.resurrected])
    }

    /// The list a linked object that no collection is examining is in.
    #[inline]
    pub(crate) fn list_of(&self, header: &Header) -> &List {
        &self.lists[header.list_index()]
    }

    /// The objects of generation `gen` (0..=2, or [`PERMANENT`]) that are not
    /// suspect.
    #[inline]
    pub(crate) fn clean(&self, gen: usize) -> &List {
        &self.lists[gen]
    }

    /// The suspects of generation `gen`: its objects marked `DIRTY`.
    #[inline]
    pub(crate) fn suspects(&self, gen: usize) -> &List {
        &self.lists[SUSPECTS + gen]
    }

    /// How many objects generation `gen` holds.
    pub(crate) fn gen_len(&self, gen: usize) -> usize {
        self.clean(gen).len() + self.suspects(gen).len()
    }

    /// Whether nothing can still point into this state: no tracked object,
    /// no pending registration, no deferred destruction.
    fn is_vacant(&self) -> bool {
        self.all_lists().all(List::is_empty)
            && self.registrations.borrow().is_empty()
            && self.trash.borrow().is_empty()
    }
}

thread_local! {
    /// This thread's heap. A plain pointer with no destructor, so it can be
    /// read at any time, even while other thread-locals are being destroyed.
    static STATE: Cell<*const State> = const { Cell::new(ptr::null()) };
    /// Runs the final collection when the thread exits.
    static EXIT: ExitGuard = const { ExitGuard };
}

/// This thread's heap, created on first use.
///
/// The reference is valid until [`reap`] frees the state. That happens only
/// once the thread is exiting, the state refers to nothing and nothing refers
/// to it (no tracked object, registration or deferred destruction), and only
/// from the outermost frames of the crate (the exit guard, the end of the
/// outermost destruction, the end of dropping a weak handle), which hold no
/// other reference to the state by then.
#[inline]
pub(crate) fn state() -> &'static State {
    let p = STATE.with(Cell::get);
    if p.is_null() {
        return init_state();
    }
    // SAFETY: a non-null pointer was made by `State::create` and is only
    // freed (and nulled) by `reap`, under the conditions stated above.
    unsafe { &*p }
}

#[cold]
fn init_state() -> &'static State {
    let p = State::create();
    STATE.with(|s| s.set(p));
    // SAFETY: just allocated; see `state`.
    let st = unsafe { &*p };
    // Registering the exit guard fails only if the thread is already tearing
    // down its thread-locals; the state is then orphaned from the start and
    // `reap` frees it once it is empty.
    if EXIT.try_with(|_| ()).is_err() {
        st.orphaned.set(true);
        st.outermost_work.set(true);
    }
    st
}

/// Frees the state if the thread has exited and nothing is left in it.
///
/// Called at the end of the outermost destruction and of weak-handle drops
/// (after checking `orphaned` on the state they hold), so that objects that
/// outlive the exit guard, held by thread-locals destroyed after it, still
/// release the heap when the last of them goes.
///
/// It takes no `&State` argument on purpose: a reference passed as an argument
/// must stay valid for the whole call, so the state could not be freed inside.
/// Callers may hold a reference in a local, but must not use it afterwards.
#[cold]
pub(crate) fn reap() {
    let p = STATE.with(Cell::get);
    if p.is_null() {
        return;
    }
    // SAFETY: see `state`.
    let st = unsafe { &*p };
    if !st.orphaned.get() || st.collecting.get() || st.trash_depth.get() != 0 || !st.is_vacant() {
        return;
    }
    STATE.with(|s| s.set(ptr::null()));
    // SAFETY: the pointer came from `State::create`; nothing refers to the
    // state (`is_vacant`, no collection or destruction in progress), `st` is
    // not used again, and every caller of `reap` is done with its reference.
    drop(unsafe { Box::from_raw(p.cast_mut()) });
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let p = STATE.with(Cell::get);
        if p.is_null() {
            return;
        }
        // SAFETY: see `state`.
        let st = unsafe { &*p };
        let run = std::panic::AssertUnwindSafe(|| {
            trashcan::drain(st);
            // Unlike CPython, which leaves the permanent generation to the
            // operating system at exit, a thread's frozen garbage is freed
            // too: the process goes on after the thread.
            crate::control::unfreeze();
            // A finalizer may make new garbage; a few rounds settle any
            // program that is not creating garbage forever.
            for _ in 0..8 {
                if collect::collect_generation(st, 2, false) == 0 {
                    break;
                }
            }
        });
        if std::panic::catch_unwind(run).is_err() {
            log::error!(target: "gencc", "a panic in user code during the thread-exit collection was ignored");
        }
        st.orphaned.set(true);
        st.outermost_work.set(true);
        reap();
    }
}
