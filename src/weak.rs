//! [`Weak<T>`] and weak-reference callbacks.
//!
//! A plain weak handle is a pointer and a count, as in `Rc`. A handle made by
//! [`Gc::downgrade_with`] also shares a [`Registration`]: the callback, plus
//! enough bookkeeping to know whether any handle to it is still alive. The
//! heap keeps a side table from each object to its registrations, and a flag
//! bit in the object's header says whether it has any, so objects without
//! callbacks never touch the table.
//!
//! Both kinds are one word, as `std::rc::Weak` is: a handle with a callback
//! points at its registration instead of the object (the low bit tells them
//! apart), and the registration knows the object. A weak reference per node,
//! a parent link or a cache entry, then costs what it costs in `Rc`, and the
//! plain handle's `upgrade` tests one bit before reading the header, as it
//! tested for [`Weak::new`] before.

use core::fmt;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use std::rc::Rc;

use smallvec::SmallVec;

use crate::collector::{state, State};
use crate::header::{Header, TypeInfo, DROPPED, HAS_CALLBACKS, WEAK_CLEARED};
use crate::primitive::cell::Cell;
use crate::trace::{Trace, Tracer};
use crate::Gc;

/// A non-owning handle: it does not keep the value alive, and
/// [`upgrade`](Weak::upgrade) returns `None` once the value is gone.
///
/// Weak handles do not take part in cycles: a structure whose back edges are
/// weak (a parent link, a cache) is freed by reference counting alone.
/// The collector clears every weak handle to an object before it runs any
/// finalizer or callback, so no user code can revive garbage through one.
///
/// ```
/// use gencc::{Gc, Weak};
///
/// let empty: Weak<u32> = Weak::new();
/// assert!(empty.upgrade().is_none());
///
/// let strong = Gc::new(5u32);
/// let weak = Gc::downgrade(&strong);
/// assert_eq!(*weak.upgrade().unwrap(), 5);
/// drop(strong);
/// assert!(weak.upgrade().is_none());
/// ```
pub struct Weak<T: Trace + 'static> {
    /// With bit 0 clear, the object's header. With it set, either
    /// [`DANGLING`] (a handle to nothing), or a registration (from
    /// `Rc::into_raw`, one count of which this handle owns) that holds the
    /// header. Headers are 4-aligned and registrations 8-aligned, so the bit
    /// is free; a tagged registration has bits 1 and 2 clear, `DANGLING`
    /// has them set.
    ptr: NonNull<()>,
    _marker: PhantomData<T>,
}

/// A callback attached to one object through weak handles.
pub(crate) struct Registration {
    /// Called with the referent's header while its allocation is alive; it
    /// makes the dead `Weak` the user's callback receives.
    callback: Cell<Option<Callback>>,
    /// The referent: its address is the side-table key, and the handles that
    /// share this registration reach the object through it.
    header: NonNull<Header>,
    /// Whether the side table still holds one `Rc` to this registration.
    attached: Cell<bool>,
    /// Scratch of a collection: part of the batch being decided.
    scanning: Cell<bool>,
    /// Scratch of a collection: handles found inside the garbage.
    internal: Cell<usize>,
}

impl Registration {
    fn key(&self) -> usize {
        self.header.addr().get()
    }

    pub(crate) fn count_internal_handle(&self) {
        if self.scanning.get() {
            self.internal.set(self.internal.get() + 1);
        }
    }

    /// Marks the registration as taken out of the table and about to be
    /// decided by a collection.
    pub(crate) fn begin_scan(&self) {
        self.scanning.set(true);
        self.internal.set(0);
    }

    /// Ends the scan. Returns the callback and whether it should run: whether
    /// some handle lives outside the garbage. `self` is referenced by its
    /// handles and by the caller's batch.
    pub(crate) fn end_scan(self: &Rc<Self>) -> (Option<Callback>, bool) {
        self.scanning.set(false);
        let handles = Rc::strong_count(self) - 1;
        (self.callback.take(), handles > self.internal.get())
    }
}

pub(crate) type Callback = Box<dyn FnOnce(NonNull<Header>)>;

/// Adds a registration for `object` and returns the handles' share of it.
///
/// The registration keeps no weak reference of its own, so that
/// `weak_count` counts only the user's handles: the `Weak` passed to the
/// callback is made when it runs, from the header of the dying object.
pub(crate) fn register<T: Trace + 'static>(
    st: &State,
    object: NonNull<Header>,
    callback: impl FnOnce(&Weak<T>) + 'static,
) -> Rc<Registration> {
    let call: Callback = Box::new(move |header: NonNull<Header>| {
        // SAFETY: callbacks run only while the referent's allocation is
        // alive (before its destruction, or while the collector holds it).
        unsafe { header.as_ref() }.inc_weak(header);
        callback(&Weak::from_parts(header, None));
    });
    let reg = Rc::new(Registration {
        callback: Cell::new(Some(call)),
        header: object,
        attached: Cell::new(true),
        scanning: Cell::new(false),
        internal: Cell::new(0),
    });
    st.registrations
        .borrow_mut()
        .entry(reg.key())
        .or_default()
        .push(reg.clone());
    reg
}

/// Removes and returns every registration of `object`, clearing its flag.
pub(crate) fn take_registrations(
    st: &State,
    object: NonNull<Header>,
) -> Option<SmallVec<[Rc<Registration>; 1]>> {
    // SAFETY: callers pass a live object.
    unsafe { object.as_ref() }.clear(HAS_CALLBACKS);
    let regs = st
        .registrations
        .borrow_mut()
        .swap_remove(&object.addr().get())?;
    for r in &regs {
        r.attached.set(false);
    }
    Some(regs)
}

/// Runs the callbacks of an object dying by reference counting, newest first.
/// Returns the first panic a callback raised, after running all of them, so
/// that the caller can finish destroying the object before re-raising it.
///
/// # Safety
///
/// - `object` must be alive with a zero strong count, so that every weak
///   handle already fails to upgrade.
///
/// It holds no reference to the heap state while callbacks run: one of them
/// may release the last object of an exited thread's heap (see
/// `collector::reap`).
pub(crate) unsafe fn fire_on_death(
    object: NonNull<Header>,
) -> Option<Box<dyn core::any::Any + Send>> {
    let regs = take_registrations(state(), object)?;
    let mut first_panic = None;
    for r in regs.iter().rev() {
        let callback = r.callback.take();
        // Only if a handle outside this batch still exists.
        let live = Rc::strong_count(r) > 1;
        let run = core::panic::AssertUnwindSafe(move || match callback {
            Some(cb) if live => cb(object),
            other => drop(other),
        });
        if let Err(payload) = std::panic::catch_unwind(run) {
            first_panic.get_or_insert(payload);
        }
    }
    first_panic
}

/// The last handle of a registration is going: the callback will never run.
fn detach(registration: &Rc<Registration>, object: NonNull<Header>) {
    let st = state();
    let removed = {
        let mut table = st.registrations.borrow_mut();
        let Some(regs) = table.get_mut(&registration.key()) else {
            return;
        };
        let Some(i) = regs.iter().position(|r| Rc::ptr_eq(r, registration)) else {
            return;
        };
        let removed = regs.remove(i);
        if regs.is_empty() {
            table.swap_remove(&registration.key());
            // SAFETY: the weak handle being dropped keeps the allocation alive.
            unsafe { object.as_ref() }.clear(HAS_CALLBACKS);
        }
        removed
    };
    removed.attached.set(false);
    // Dropped outside the table borrow: it may run user code (the callback's
    // captures).
    // The drop may even free the state (see `collector::reap`), so `st` is
    // not used after it.
    drop(removed);
    crate::collector::reap();
}

/// The address `Weak::new` uses: never a real header, never dereferenced.
const DANGLING: usize = usize::MAX;

/// The bit of `Weak::ptr` that marks a registration (or `DANGLING`).
const TAGGED: usize = 1;

impl<T: Trace + 'static> Weak<T> {
    /// A weak handle to nothing; [`upgrade`](Weak::upgrade) always returns
    /// `None`.
    ///
    /// ```
    /// assert!(gencc::Weak::<i32>::new().upgrade().is_none());
    /// ```
    pub const fn new() -> Self {
        Weak {
            // SAFETY: `DANGLING` is not zero.
            ptr: unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(DANGLING)) },
            _marker: PhantomData,
        }
    }

    /// A handle to `header`, which owns one weak reference to it (taken by
    /// the caller) and, with `registration`, that share of it.
    pub(crate) fn from_parts(
        header: NonNull<Header>,
        registration: Option<Rc<Registration>>,
    ) -> Self {
        let ptr = match registration {
            None => header.cast(),
            Some(reg) => {
                debug_assert_eq!(reg.header, header);
                let raw = Rc::into_raw(reg).cast_mut();
                // SAFETY: `Rc::into_raw` never returns null.
                let raw = unsafe { NonNull::new_unchecked(raw) };
                raw.map_addr(|a| a | TAGGED).cast()
            }
        };
        Weak {
            ptr,
            _marker: PhantomData,
        }
    }

    /// The registration this handle shares, as the pointer `Rc::into_raw`
    /// gave, if it has one.
    #[inline]
    fn registration_ptr(&self) -> Option<NonNull<Registration>> {
        let addr = self.ptr.addr().get();
        if addr & TAGGED == 0 || addr == DANGLING {
            return None;
        }
        let raw = self.ptr.as_ptr().map_addr(|a| a & !TAGGED).cast();
        // SAFETY: untagged, this is the address `Rc::into_raw` returned.
        Some(unsafe { NonNull::new_unchecked(raw) })
    }

    #[inline]
    fn registration(&self) -> Option<&Registration> {
        // SAFETY: this handle owns one count of the registration's `Rc`,
        // which keeps it alive while `self` is borrowed.
        self.registration_ptr().map(|r| unsafe { r.as_ref() })
    }

    /// The object's header, unless this is a handle to nothing. The plain
    /// handle, the common one, is a single test.
    #[inline]
    fn target(&self) -> Option<NonNull<Header>> {
        if self.ptr.addr().get() & TAGGED == 0 {
            Some(self.ptr.cast())
        } else {
            self.registration().map(|r| r.header)
        }
    }

    #[inline]
    fn header(&self) -> Option<(NonNull<Header>, &Header)> {
        self.target().map(|p| {
            // SAFETY: a handle to an object holds one weak reference, which
            // keeps the allocation (not the value) alive while it exists.
            (p, unsafe { p.as_ref() })
        })
    }

    /// A strong handle, if the value is still alive and the collector has not
    /// cleared this object's weak references.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new('x');
    /// let w = Gc::downgrade(&a);
    /// assert!(Gc::ptr_eq(&w.upgrade().unwrap(), &a));
    /// ```
    pub fn upgrade(&self) -> Option<Gc<T>> {
        let (p, h) = self.header()?;
        if h.strong_is_zero() || h.has(WEAK_CLEARED | DROPPED) {
            return None;
        }
        h.inc_strong(p);
        Some(Gc::from_header(p))
    }

    /// The number of strong handles, or 0 if [`upgrade`](Weak::upgrade) would
    /// fail.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new(1);
    /// let w = Gc::downgrade(&a);
    /// assert_eq!(w.strong_count(), 1);
    /// drop(a);
    /// assert_eq!(w.strong_count(), 0);
    /// ```
    pub fn strong_count(&self) -> usize {
        match self.header() {
            Some((p, h)) if !h.has(WEAK_CLEARED) && !h.has(DROPPED) => h.strong(p),
            _ => 0,
        }
    }

    /// The number of weak handles to the object, or 0 once no strong handle
    /// remains (as `std::rc::Weak::weak_count`).
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new(1);
    /// let w = Gc::downgrade(&a);
    /// let _w2 = w.clone();
    /// assert_eq!(w.weak_count(), 2);
    /// ```
    pub fn weak_count(&self) -> usize {
        match self.header() {
            Some((p, h)) if h.strong(p) > 0 => h.weak(p) - 1,
            _ => 0,
        }
    }

    /// Whether two weak handles point to the same allocation (two
    /// [`Weak::new`] handles are equal).
    ///
    /// ```
    /// use gencc::{Gc, Weak};
    /// let a = Gc::new(1);
    /// assert!(Weak::ptr_eq(&Gc::downgrade(&a), &Gc::downgrade(&a)));
    /// assert!(Weak::ptr_eq(&Weak::<i32>::new(), &Weak::new()));
    /// ```
    pub fn ptr_eq(&self, other: &Self) -> bool {
        self.target() == other.target()
    }
}

impl<T: Trace + 'static> Default for Weak<T> {
    /// Same as [`Weak::new`].
    ///
    /// ```
    /// assert!(gencc::Weak::<u8>::default().upgrade().is_none());
    /// ```
    fn default() -> Self {
        Weak::new()
    }
}

impl<T: Trace + 'static> Clone for Weak<T> {
    /// Another handle to the same object, sharing the callback registration
    /// if any: the callback runs if at least one clone is alive.
    ///
    /// ```
    /// let a = gencc::Gc::new(1);
    /// let w = gencc::Gc::downgrade(&a);
    /// assert!(w.clone().upgrade().is_some());
    /// ```
    fn clone(&self) -> Self {
        if let Some((p, h)) = self.header() {
            h.inc_weak(p);
        }
        if let Some(reg) = self.registration_ptr() {
            // SAFETY: the pointer came from `Rc::into_raw`, and this handle's
            // count keeps the registration alive; the clone owns the new
            // count.
            unsafe { Rc::increment_strong_count(reg.as_ptr()) };
        }
        Weak {
            ptr: self.ptr,
            _marker: PhantomData,
        }
    }
}

impl<T: Trace + 'static> Drop for Weak<T> {
    fn drop(&mut self) {
        let Some(p) = self.target() else {
            return;
        };
        if let Some(reg) = self.registration_ptr() {
            // SAFETY: the pointer came from `Rc::into_raw`, and this handle
            // owns one count, given back here, once.
            let reg = unsafe { Rc::from_raw(reg.as_ptr()) };
            // This handle and the side table are the last two owners.
            if reg.attached.get() && Rc::strong_count(&reg) == 2 {
                detach(&reg, p);
            }
        }
        // SAFETY: this handle's weak reference keeps the allocation alive
        // until the decrement below.
        let h = unsafe { p.as_ref() };
        if h.dec_weak(p) {
            // SAFETY: the last weak reference, including the implicit one
            // of the strong handles, so the value is dropped and nothing
            // else refers to the allocation.
            unsafe { TypeInfo::<T>::deallocate(p) };
        }
    }
}

impl<T: Trace + 'static> fmt::Debug for Weak<T> {
    /// ```
    /// assert_eq!(format!("{:?}", gencc::Weak::<u8>::new()), "(Weak)");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(Weak)")
    }
}

// SAFETY: a weak handle owns no strong reference, so it reports no strong
// edge (and `NEEDS_TRACE` is false: it cannot close a cycle). It does report
// its callback registration, which the collector uses only to tell whether
// the weak reference is itself garbage.
unsafe impl<T: Trace + 'static> Trace for Weak<T> {
    const NEEDS_TRACE: bool = false;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(reg) = self.registration() {
            tracer.weak(reg);
        }
    }
}
