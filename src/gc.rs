//! [`Gc<T>`]: the strong handle.

use core::borrow::Borrow;
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::marker::PhantomData;
use core::ops::Deref;
use core::ptr::NonNull;

use crate::collector::{dirty, state, trashcan, trigger, State};
use crate::control::Generation;
use crate::header::{Header, Released, TypeInfo, DROPPED, FINALIZED, HAS_CALLBACKS, WEAK_CLEARED};
use crate::trace::{Trace, Tracer};
use crate::weak::{self, Weak};

/// A reference-counted pointer whose cycles are found and freed by a
/// generational collector.
///
/// `Gc<T>` behaves like [`Rc<T>`](std::rc::Rc): cloning adds a reference,
/// dropping the last one destroys the value at once. In addition, values of a
/// type that can hold handles (`T::NEEDS_TRACE`) are *tracked*: they live in
/// one of three generations, and unreachable cycles among them are collected
/// automatically as allocation goes on, or by [`collect`](crate::collect).
///
/// A `Gc` is neither `Send` nor `Sync`: each thread has its own heap.
///
/// ```
/// use std::cell::RefCell;
/// use gencc::{Gc, Trace};
///
/// #[derive(Trace)]
/// struct Node {
///     name: String,
///     next: RefCell<Option<Gc<Node>>>,
/// }
///
/// let a = Gc::new(Node { name: "a".into(), next: RefCell::new(None) });
/// let b = Gc::new(Node { name: "b".into(), next: RefCell::new(Some(a.clone())) });
/// *a.next.borrow_mut() = Some(b.clone()); // a <-> b
/// assert_eq!(Gc::strong_count(&a), 2);
///
/// drop((a, b)); // reference counting alone cannot free the cycle
/// assert_eq!(gencc::collect(), 2);
/// ```
pub struct Gc<T: Trace + 'static> {
    ptr: NonNull<Header>,
    _owns: PhantomData<T>,
}

impl<T: Trace + 'static> Gc<T> {
    /// Allocates `value` and returns the first handle to it.
    ///
    /// For a tracked type this counts one allocation toward generation 0's
    /// threshold and may first run an automatic collection, as CPython does
    /// inside object allocation. A panic raised by user code during that
    /// collection (a finalizer, a callback, a `Drop`) propagates from here,
    /// after the collection has finished; `value` is then dropped.
    ///
    /// ```
    /// let g = gencc::Gc::new(5);
    /// assert_eq!(*g, 5);
    /// ```
    #[inline]
    pub fn new(value: T) -> Self {
        if TypeInfo::<T>::TRACKED {
            let st = state();
            trigger::on_alloc(st);
            if T::HAS_FINALIZER {
                st.finalizable.set(true);
            }
            let h = TypeInfo::<T>::allocate(value);
            // SAFETY: a fresh tracked object, in no list; its flags are clear
            // and its generation number is 0 from allocation.
            unsafe { st.clean(0).push_back(Header::links(h)) };
            Gc::from_header(h)
        } else {
            Gc::from_header(TypeInfo::<T>::allocate(value))
        }
    }

    #[inline]
    pub(crate) fn from_header(ptr: NonNull<Header>) -> Self {
        Gc {
            ptr,
            _owns: PhantomData,
        }
    }

    #[inline]
    fn header(&self) -> &Header {
        // SAFETY: a strong handle keeps the allocation alive.
        unsafe { self.ptr.as_ref() }
    }

    /// Whether two handles point to the same object.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new(1);
    /// let b = a.clone();
    /// assert!(Gc::ptr_eq(&a, &b));
    /// assert!(!Gc::ptr_eq(&a, &Gc::new(1)));
    /// ```
    #[inline]
    pub fn ptr_eq(this: &Self, other: &Self) -> bool {
        this.ptr == other.ptr
    }

    /// The number of strong handles to this object.
    ///
    /// While the collector is destroying garbage (for example inside a
    /// finalizer) the count includes the one reference the collector holds on
    /// each garbage object.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new("x".to_string());
    /// let _b = a.clone();
    /// assert_eq!(Gc::strong_count(&a), 2);
    /// ```
    #[inline]
    pub fn strong_count(this: &Self) -> usize {
        this.header().strong(this.ptr)
    }

    /// The number of [`Weak`] handles to this object.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new(3);
    /// let w = Gc::downgrade(&a);
    /// assert_eq!(Gc::weak_count(&a), 1);
    /// drop(w);
    /// assert_eq!(Gc::weak_count(&a), 0);
    /// ```
    #[inline]
    pub fn weak_count(this: &Self) -> usize {
        // Minus the implicit weak reference shared by the strong ones.
        this.header().weak(this.ptr) - 1
    }

    /// Creates a [`Weak`] handle to this object.
    ///
    /// If the collector already cleared this object's weak references (it was
    /// found in garbage and then resurrected by a finalizer), the new handle is
    /// dead from the start, like the old ones.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new(3);
    /// let w = Gc::downgrade(&a);
    /// assert_eq!(w.upgrade().as_deref(), Some(&3));
    /// drop(a);
    /// assert!(w.upgrade().is_none());
    /// ```
    pub fn downgrade(this: &Self) -> Weak<T> {
        this.header().inc_weak(this.ptr);
        Weak::from_parts(this.ptr, None)
    }

    /// Creates a [`Weak`] handle whose `callback` runs when the object dies,
    /// like `weakref.ref(obj, callback)`.
    ///
    /// The callback runs once, with a (dead) copy of the weak handle, when the
    /// object is destroyed by reference counting or by the collector, after
    /// every weak reference to it has been cleared. It does not run if every
    /// clone of the returned handle was dropped before the object died, nor if
    /// those clones are all stored inside the same unreachable garbage as the
    /// object. Several callbacks on one object run newest first. A panic in a
    /// callback propagates from the `drop` or `collect` that ran it, once the
    /// object is destroyed.
    ///
    /// On an object whose weak references the collector already cleared (it
    /// was resurrected by a finalizer) this returns a dead handle, as
    /// [`Gc::downgrade`] does, and the callback is dropped unregistered.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// use gencc::Gc;
    ///
    /// let fired = Rc::new(Cell::new(false));
    /// let a = Gc::new(10);
    /// let f = fired.clone();
    /// let w = Gc::downgrade_with(&a, move |w| {
    ///     assert!(w.upgrade().is_none()); // already cleared
    ///     f.set(true);
    /// });
    /// assert_eq!(Gc::weak_count(&a), 1); // the registration holds no hidden handle
    /// drop(a);
    /// assert!(fired.get());
    /// drop(w);
    /// ```
    pub fn downgrade_with(this: &Self, callback: impl FnOnce(&Weak<T>) + 'static) -> Weak<T> {
        let h = this.header();
        if h.has(WEAK_CLEARED) || h.has(DROPPED) {
            return Gc::downgrade(this);
        }
        let reg = weak::register(state(), this.ptr, callback);
        h.set(HAS_CALLBACKS);
        h.inc_weak(this.ptr);
        Weak::from_parts(this.ptr, Some(reg))
    }

    /// The generation this object is in, or `None` if it is not tracked.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use gencc::{Gc, Generation, Trace};
    ///
    /// #[derive(Trace)]
    /// struct Node(RefCell<Vec<Gc<Node>>>);
    ///
    /// let n = Gc::new(Node(RefCell::new(vec![])));
    /// assert_eq!(Gc::generation(&n), Some(Generation::Young));
    /// gencc::collect_generation(0).unwrap();
    /// assert_eq!(Gc::generation(&n), Some(Generation::Middle));
    /// assert_eq!(Gc::generation(&Gc::new(1u8)), None); // never tracked
    /// ```
    pub fn generation(this: &Self) -> Option<Generation> {
        if !is_linked::<T>(this.ptr) {
            return None;
        }
        Some(match this.header().generation() {
            0 => Generation::Young,
            1 => Generation::Middle,
            2 => Generation::Old,
            _ => Generation::Permanent,
        })
    }

    /// Whether the object's finalizer has run (`gc.is_finalized`). Always
    /// `false` for types without a finalizer.
    ///
    /// ```
    /// use gencc::Gc;
    /// assert!(!Gc::is_finalized(&Gc::new(1)));
    /// ```
    #[inline]
    pub fn is_finalized(this: &Self) -> bool {
        this.header().has(FINALIZED)
    }

    /// Whether the collector follows this object's edges: `true` for a live
    /// object of a type that can hold handles (`gc.is_tracked`).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use gencc::Gc;
    /// assert!(!Gc::is_tracked(&Gc::new(String::from("atom"))));
    /// assert!(Gc::is_tracked(&Gc::new(RefCell::new(Vec::<Gc<u8>>::new()))));
    /// ```
    #[inline]
    pub fn is_tracked(this: &Self) -> bool {
        is_linked::<T>(this.ptr)
    }

    /// The bytes this object occupies: the value; the header (8 bytes: the
    /// two counts and the flags); for a tracked type, the collector's list
    /// links (16 more) and, unless its pool keeps it, a pointer to the type's
    /// vtable (8 more); and the rounding of the allocator that serves it (to
    /// 8 bytes in the default pool allocator, for objects of up to 512
    /// bytes; to 16 for a 16-aligned one).
    ///
    /// With the default `pool` feature the vtable pointer is kept once per
    /// 4 KiB pool, for the first 64 tracked types a thread allocates (see
    /// the crate docs, "Memory"); without it, every tracked object carries
    /// it. The pool's own bookkeeping adds about 1.6 % on top of this figure
    /// (a 64-byte header per pool).
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::mem::size_of;
    /// use gencc::Gc;
    /// // Untracked: the header and the value, 16 bytes (an `Rc<u64>` asks
    /// // for 24).
    /// let leaf = Gc::new(0u64);
    /// assert_eq!(Gc::allocated_bytes(&leaf), 16);
    /// // Tracked: 24 bytes in front of the value with the pool, 32 without.
    /// type Slot = RefCell<Option<Gc<u64>>>;
    /// let node: Gc<Slot> = Gc::new(RefCell::new(None));
    /// let overhead = Gc::allocated_bytes(&node) - size_of::<Slot>();
    /// assert!(overhead == 24 || overhead == 32, "{overhead}");
    /// ```
    #[inline]
    pub fn allocated_bytes(this: &Self) -> usize {
        // SAFETY: a strong handle keeps its box of `T` alive.
        unsafe { TypeInfo::<T>::allocated_size(this.ptr) }
    }

    /// A raw pointer to the value, for printing and identity.
    ///
    /// ```
    /// use gencc::Gc;
    /// let a = Gc::new(1);
    /// assert_eq!(Gc::as_ptr(&a), &*a as *const i32);
    /// ```
    #[inline]
    pub fn as_ptr(this: &Self) -> *const T {
        // SAFETY: the allocation is alive and is a box of `T`.
        unsafe { TypeInfo::<T>::value(this.ptr) }.as_ptr()
    }

    /// The value, or `None` if the collector has already dropped it.
    ///
    /// A handle to a dropped value can only be observed from `Drop` code run
    /// by the collector (a peer in the same garbage), or through a handle that
    /// such code stored. Dereferencing it with `*` panics; this is the
    /// non-panicking check.
    ///
    /// ```
    /// use gencc::Gc;
    /// assert_eq!(Gc::try_get(&Gc::new(4)), Some(&4));
    /// ```
    #[inline]
    pub fn try_get(this: &Self) -> Option<&T> {
        if this.header().has(DROPPED) {
            None
        } else {
            // SAFETY: not dropped, and the handle keeps the allocation alive;
            // values are only mutated through their own interior mutability.
            Some(unsafe { TypeInfo::<T>::value(this.ptr).as_ref() })
        }
    }
}

/// Whether the object behind `ptr` is linked in a list.
#[inline]
fn is_linked<T: Trace + 'static>(ptr: NonNull<Header>) -> bool {
    // SAFETY: a tracked type's box has links before its header.
    TypeInfo::<T>::TRACKED && !unsafe { Header::links(ptr).as_ref() }.next.get().is_null()
}

/// Links a tracked object into generation `gen`.
///
/// # Safety
///
/// - `h` must be a live tracked object in no list.
pub(crate) unsafe fn track(st: &State, h: NonNull<Header>, gen: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        let hdr = h.as_ref();
        // A (re)linked object starts clean: any later loss of a reference
        // marks it again. (One whose count does not fit beside the clean
        // mark stays dirty, and is filed as a suspect.)
        hdr.try_clean();
        hdr.set_generation(gen);
        st.list_of(hdr).push_back(Header::links(h));
    }
}

/// Unlinks a tracked object from its list, if it is in one.
///
/// # Safety
///
/// - `h` must be a live tracked object, not in the middle of a collection.
#[inline]
pub(crate) unsafe fn untrack(st: &State, h: NonNull<Header>) {
    // SAFETY: forwarded from the caller; a linked object outside a
    // collection is in the list its flags name.
    unsafe {
        let links = Header::links(h);
        if !links.as_ref().next.get().is_null() {
            st.list_of(h.as_ref()).remove(links);
        }
    }
}

/// Destroys an object whose strong count just reached zero: finalizer,
/// weak callbacks, value, memory.
///
/// `st` is the heap state for a tracked type (`None` for an untracked one,
/// which never touches the heap's lists).
///
/// # Safety
///
/// - `h` must be a box of `T` with a zero strong count, destroyed by no one
///   else.
/// - `st` must be `Some` exactly when `T` is tracked, and a tracked
///   destruction must run inside the trashcan (depth at least 1), so that the
///   state cannot be freed while `st` is borrowed.
#[inline(always)]
pub(crate) unsafe fn drop_slow<T: Trace + 'static>(h: NonNull<Header>, st: Option<&State>) {
    debug_assert_eq!(st.is_some(), TypeInfo::<T>::TRACKED);
    // SAFETY: the allocation is alive until the implicit weak reference goes.
    let hdr = unsafe { h.as_ref() };
    if !T::HAS_FINALIZER && !hdr.has(DROPPED | HAS_CALLBACKS) {
        // The common death: no finalizer, no callback, value intact.
        // SAFETY: forwarded from the caller; nothing ran since the count
        // reached zero.
        unsafe { finish::<T>(h, st) };
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { drop_with_hooks::<T>(h, st) };
    }
}

/// The rest of [`drop_slow`], out of line: a death with a finalizer to run,
/// callbacks to fire, or a value the collector already dropped.
///
/// # Safety
///
/// - As for [`drop_slow`].
#[cold]
#[inline(never)]
unsafe fn drop_with_hooks<T: Trace + 'static>(h: NonNull<Header>, st: Option<&State>) {
    // SAFETY: the allocation is alive until the implicit weak reference goes.
    let hdr = unsafe { h.as_ref() };
    if hdr.has(DROPPED) {
        // The collector dropped the value while `Drop` code kept a handle.
        // SAFETY: value already dropped, no strong handle left.
        unsafe { release_weak::<T>(h) };
        return;
    }
    if T::HAS_FINALIZER && !hdr.has(FINALIZED) {
        hdr.set(FINALIZED);
        if let Some(st) = st {
            if !is_linked::<T>(h) {
                // SAFETY: alive, and unlinked (it was parked by the trashcan).
                unsafe { track(st, h, 0) };
            }
        }
        // Revive for the call: the finalizer gets a real handle and may keep
        // a clone. Dropping this one comes back here, or not if it was kept.
        hdr.inc_strong(h);
        let this = Gc::<T>::from_header(h);
        T::finalize(&this);
        return;
    }
    let had_callbacks = hdr.has(HAS_CALLBACKS);
    let callback_panic = if had_callbacks {
        // SAFETY: the object is alive with a zero strong count, so the
        // callbacks can only observe it as dead.
        unsafe { weak::fire_on_death(h) }
    } else {
        None
    };
    // SAFETY: forwarded from the caller; the callbacks saw the object dead
    // and left its count at zero.
    unsafe { finish::<T>(h, st) };
    if st.is_none() && had_callbacks {
        // Its registrations may have been the last thing in an exited
        // thread's heap. (Tracked objects reach `reap` through the trashcan.)
        crate::collector::reap();
    }
    // A callback's panic surfaces only once the object is fully destroyed.
    if let Some(payload) = callback_panic {
        std::panic::resume_unwind(payload);
    }
}

/// The end of every death by reference counting: unlink a tracked object,
/// drop the value, release the implicit weak reference (freeing the memory
/// if no `Weak` is left).
///
/// No `DROPPED` mark is needed: with the strong count at zero no handle
/// exists that could dereference the value, and `upgrade` fails.
///
/// # Safety
///
/// - As for [`drop_slow`], whose last step this is; the value must be intact
///   and its destruction must not have started.
#[inline(always)]
unsafe fn finish<T: Trace + 'static>(h: NonNull<Header>, st: Option<&State>) {
    if let Some(st) = st {
        // SAFETY: alive, and no detection is running while a value is dying
        // (destruction never happens inside the detection passes), so a
        // linked object is in the list its flags name. Its own links are
        // left stale: nothing reads them again, as no strong handle is left
        // and it is in no list.
        unsafe {
            let links = Header::links(h);
            if !links.as_ref().next.get().is_null() {
                st.list_of(h.as_ref()).take_out(links);
            }
        }
        trigger::on_dealloc(st);
    }
    // SAFETY: no reference to the value is alive since no strong handle is,
    // and this is its only destruction.
    unsafe {
        core::ptr::drop_in_place(TypeInfo::<T>::value(h).as_ptr());
        release_weak::<T>(h);
    }
}

/// [`drop_slow`] behind the vtable, for deferred destructions.
///
/// # Safety
///
/// - As for [`drop_slow`]; a tracked destruction must run inside the
///   trashcan.
pub(crate) unsafe fn drop_slow_erased<T: Trace + 'static>(h: NonNull<Header>) {
    let st = TypeInfo::<T>::TRACKED.then(state);
    // SAFETY: forwarded from the caller.
    unsafe { drop_slow::<T>(h, st) }
}

/// Drops the implicit weak reference and frees the memory if it was the last.
///
/// # Safety
///
/// - `h` must be a box of `T` whose value is dropped and whose strong count
///   is zero.
#[inline(always)]
pub(crate) unsafe fn release_weak<T: Trace + 'static>(h: NonNull<Header>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match h.as_ref().dec_weak_in_header() {
            Some(true) => TypeInfo::<T>::deallocate(h),
            Some(false) => {}
            None => release_weak_spilled::<T>(h),
        }
    }
}

/// [`release_weak`] for a weak count at the largest the header stores,
/// out of line so that the common path makes no call but the free.
///
/// # Safety
///
/// - As for [`release_weak`].
#[cold]
#[inline(never)]
unsafe fn release_weak_spilled<T: Trace + 'static>(h: NonNull<Header>) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if h.as_ref().dec_weak(h) {
            TypeInfo::<T>::deallocate(h);
        }
    }
}

/// The collector's finalizer call: the collector holds a reference, which the
/// finalizer sees as a borrowed handle.
///
/// # Safety
///
/// - `h` must be a live box of `T`, held by the collector, value intact.
pub(crate) unsafe fn finalize_erased<T: Trace + 'static>(h: NonNull<Header>) {
    let this = core::mem::ManuallyDrop::new(Gc::<T>::from_header(h));
    T::finalize(&this);
}

impl<T: Trace + 'static> Drop for Gc<T> {
    #[inline]
    fn drop(&mut self) {
        let hdr = self.header();
        if TypeInfo::<T>::TRACKED {
            // One decrement and one test, which also catch a clean object
            // (see `header`, "The strong word").
            if hdr.release() {
                // SAFETY: this handle's reference was just released, and
                // the handle is going away.
                unsafe { released::<T>(self.ptr) };
            }
        } else if hdr.dec_strong(self.ptr) {
            // SAFETY: the count just reached zero, so this is the only
            // destruction.
            unsafe { dead::<T>(self.ptr) };
        }
    }
}

/// The last strong handle to an untracked `h` is gone. Kept out of line, as
/// `Rc` does, so that `Gc::drop` stays a decrement and a test wherever it is
/// inlined.
///
/// # Safety
///
/// - As for [`destroy`].
#[inline(never)]
unsafe fn dead<T: Trace + 'static>(h: NonNull<Header>) {
    // SAFETY: forwarded from the caller.
    unsafe { destroy::<T>(h) }
}

/// The slow path of a tracked object's `Gc::drop`: the count reached zero,
/// or the object was clean and becomes a suspect.
///
/// Every call it makes is in tail position, so that it saves no registers:
/// an object the collector already dropped (half of those in a collected
/// cycle die here) is freed with no more than its own instructions.
///
/// # Safety
///
/// - `h` must be a live tracked box of `T` that just lost a strong reference
///   through [`Header::release`], with nothing run since.
#[inline(never)]
unsafe fn released<T: Trace + 'static>(h: NonNull<Header>) {
    // SAFETY: the allocation is alive until the implicit weak reference goes.
    let hdr = unsafe { h.as_ref() };
    match hdr.released() {
        // SAFETY: forwarded from the caller.
        None => unsafe { released_spilled::<T>(h) },
        // SAFETY: forwarded from the caller.
        Some(outcome) => unsafe { act_on::<T>(h, outcome) },
    }
}

/// [`released`] for an object part of whose count is in the side table.
///
/// # Safety
///
/// - As for [`released`].
#[cold]
#[inline(never)]
unsafe fn released_spilled<T: Trace + 'static>(h: NonNull<Header>) {
    // SAFETY: the allocation is alive until the implicit weak reference goes.
    let outcome = unsafe { h.as_ref() }.released_spilled(h);
    // SAFETY: forwarded from the caller.
    unsafe { act_on::<T>(h, outcome) }
}

/// What [`released`] does once it knows what the lost reference means.
///
/// # Safety
///
/// - As for [`released`], with `outcome` what [`Header::released`] or
///   [`Header::released_spilled`] says.
#[inline(always)]
unsafe fn act_on<T: Trace + 'static>(h: NonNull<Header>, outcome: Released) {
    match outcome {
        // SAFETY: the count just reached zero, so this is the only
        // destruction.
        Released::Dead => unsafe { destroy::<T>(h) },
        // SAFETY: a live tracked object that is not dirty yet. No detection
        // is examining it: the collector drops no handle while it searches,
        // and `Trace` rule 3 forbids user code to (garbage, which user code
        // may release later, is already dirty).
        Released::Suspect => unsafe { dirty::mark(h) },
        Released::Alive => {}
    }
}

/// The last strong handle to `h` is gone. Inlined into the two out-of-line
/// slow paths of `Gc::drop`, [`dead`] and [`released`].
///
/// # Safety
///
/// - `h` must be a box of `T` whose strong count just reached zero, and that
///   no one else is destroying.
#[inline(always)]
unsafe fn destroy<T: Trace + 'static>(h: NonNull<Header>) {
    if !TypeInfo::<T>::TRACKED {
        // SAFETY: the allocation is alive until the implicit weak reference
        // goes.
        if !T::HAS_FINALIZER && !unsafe { h.as_ref() }.has(HAS_CALLBACKS) {
            // Nothing to run but the value's own `Drop`: `Rc`'s path.
            // SAFETY: forwarded from the caller; an untracked object is in
            // no list.
            unsafe { finish::<T>(h, None) };
            return;
        }
        // SAFETY: forwarded from the caller; an untracked value holds no
        // handle, so its destruction cannot cascade and needs no trashcan.
        unsafe { drop_slow::<T>(h, None) };
        return;
    }
    // SAFETY: the allocation is alive until the implicit weak reference goes.
    if unsafe { h.as_ref() }.has(DROPPED) {
        // The collector dropped the value already: this was a handle held by
        // garbage (half of the objects of a collected cycle die here, as the
        // values of their peers are dropped), or kept by its `Drop` code.
        // Only the memory is left, and freeing it cascades into nothing, so
        // the trashcan is not needed.
        // SAFETY: value dropped, no strong handle left.
        unsafe { release_weak::<T>(h) };
        return;
    }
    // SAFETY: forwarded from the caller.
    unsafe { trashcan::release::<T>(h) };
}

impl<T: Trace + 'static> Clone for Gc<T> {
    /// Adds a strong reference.
    ///
    /// ```
    /// let a = gencc::Gc::new(1);
    /// let b = a.clone();
    /// assert_eq!(gencc::Gc::strong_count(&b), 2);
    /// ```
    #[inline]
    fn clone(&self) -> Self {
        self.header().inc_strong(self.ptr);
        Gc::from_header(self.ptr)
    }
}

impl<T: Trace + 'static> Deref for Gc<T> {
    type Target = T;

    /// # Panics
    ///
    /// If the collector already dropped the value: see [`Gc::try_get`].
    #[inline]
    fn deref(&self) -> &T {
        match Gc::try_get(self) {
            Some(v) => v,
            None => dropped_value(),
        }
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn dropped_value() -> ! {
    panic!(
        "gencc: dereferenced a Gc whose value the cycle collector already dropped \
         (a Drop impl of a garbage object reached a peer in the same garbage; \
         use a Finalize hook to read peers)"
    )
}

// SAFETY: a handle owns exactly one strong reference, and reports it once.
// Handles to untracked types are not reported: such objects are never in the
// set being examined, and cannot be part of a cycle.
unsafe impl<T: Trace + 'static> Trace for Gc<T> {
    const NEEDS_TRACE: bool = true;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if T::NEEDS_TRACE {
            // SAFETY: `T` is tracked, so its box has links.
            tracer.strong(unsafe { Header::links(self.ptr) });
        }
    }
}

impl<T: Trace + 'static + Default> Default for Gc<T> {
    /// ```
    /// assert_eq!(*gencc::Gc::<u8>::default(), 0);
    /// ```
    fn default() -> Self {
        Gc::new(T::default())
    }
}

impl<T: Trace + 'static> From<T> for Gc<T> {
    /// ```
    /// let g: gencc::Gc<i32> = 3.into();
    /// assert_eq!(*g, 3);
    /// ```
    fn from(value: T) -> Self {
        Gc::new(value)
    }
}

impl<T: Trace + 'static> AsRef<T> for Gc<T> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T: Trace + 'static> Borrow<T> for Gc<T> {
    fn borrow(&self) -> &T {
        self
    }
}

impl<T: Trace + 'static + fmt::Debug> fmt::Debug for Gc<T> {
    /// Delegates to `T`; a handle whose value was dropped by the collector
    /// prints as `Gc(<dropped>)` instead of panicking.
    ///
    /// ```
    /// assert_eq!(format!("{:?}", gencc::Gc::new(1)), "1");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Gc::try_get(self) {
            Some(v) => fmt::Debug::fmt(v, f),
            None => f.write_str("Gc(<dropped>)"),
        }
    }
}

impl<T: Trace + 'static + fmt::Display> fmt::Display for Gc<T> {
    /// ```
    /// assert_eq!(gencc::Gc::new("hi").to_string(), "hi");
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl<T: Trace + 'static> fmt::Pointer for Gc<T> {
    /// The address of the value.
    ///
    /// ```
    /// let g = gencc::Gc::new(1);
    /// assert_eq!(format!("{:p}", g), format!("{:p}", &*g));
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Pointer::fmt(&Gc::as_ptr(self), f)
    }
}

impl<T: Trace + 'static + PartialEq> PartialEq for Gc<T> {
    /// Compares the values, like `Rc`.
    ///
    /// ```
    /// use gencc::Gc;
    /// assert_eq!(Gc::new(5), Gc::new(5));
    /// ```
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Trace + 'static + Eq> Eq for Gc<T> {}

impl<T: Trace + 'static + PartialOrd> PartialOrd for Gc<T> {
    /// ```
    /// use gencc::Gc;
    /// assert!(Gc::new(1) < Gc::new(2));
    /// ```
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (**self).partial_cmp(&**other)
    }
}

impl<T: Trace + 'static + Ord> Ord for Gc<T> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        (**self).cmp(&**other)
    }
}

impl<T: Trace + 'static + Hash> Hash for Gc<T> {
    /// Hashes the value, like `Rc`.
    ///
    /// ```
    /// use std::collections::HashSet;
    /// let set: HashSet<_> = [gencc::Gc::new(1), gencc::Gc::new(1)].into_iter().collect();
    /// assert_eq!(set.len(), 1);
    /// ```
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state)
    }
}

#[cfg(test)]
impl<T: Trace + 'static> Gc<T> {
    /// The header pointer, for white-box tests of the collector.
    pub(crate) fn header_ptr_for_test(&self) -> NonNull<Header> {
        self.ptr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Half of what the header holds moves to the side table when the
    /// stored count would wrap, and comes back when the stored part reaches
    /// zero; the object dies only when both are gone.
    fn strong_count_spills_and_refills<T: Trace + 'static>(value: T) {
        let a = Gc::new(value);
        // A tracked object is clean until it loses a reference; make it a
        // suspect, whose strong word holds the plain count.
        drop(a.clone());
        let half = 1usize << 31;
        // Pretend four billion handles already exist, then cross the limit.
        a.header().set_strong_raw(u32::MAX - 2);
        let extra: Vec<_> = (0..5).map(|_| a.clone()).collect();
        assert_eq!(Gc::strong_count(&a), u32::MAX as usize + 3);
        // Pretend all but three of the 2^31 + 2 handles the header counts
        // were dropped: the next three drops empty the stored part.
        a.header().set_strong_raw(3);
        assert_eq!(Gc::strong_count(&a), half + 3);
        drop(extra);
        // 3 + 2^31 - 5: the spilled half came back into the header.
        assert_eq!(Gc::strong_count(&a), half - 2);
        assert!(Gc::try_get(&a).is_some());
        // Back to one real handle, with nothing left in the table.
        a.header().set_strong_raw(1);
        assert_eq!(Gc::strong_count(&a), 1);
        let w = Gc::downgrade(&a);
        drop(a);
        assert!(
            w.upgrade().is_none(),
            "the object dies with its last handle"
        );
    }

    #[test]
    fn strong_count_spills_past_u32_max_untracked() {
        strong_count_spills_and_refills(7u64);
    }

    #[test]
    fn strong_count_spills_past_u32_max_tracked() {
        strong_count_spills_and_refills(core::cell::RefCell::new(None::<Gc<u64>>));
    }

    /// A clean object's strong word holds the count plus 2^31, so it wraps
    /// at a count of 2^31; cloning keeps it clean, the first drop makes it a
    /// suspect whatever part of its count is in the table.
    #[test]
    fn a_clean_objects_count_spills_at_2_pow_31() {
        use crate::header::DIRTY;
        let a = Gc::new(core::cell::RefCell::new(None::<Gc<u64>>));
        let clean_max = (1u32 << 31) - 1;
        a.header().set_strong_raw(clean_max - 2);
        let extra: Vec<_> = (0..5).map(|_| a.clone()).collect();
        assert_eq!(Gc::strong_count(&a), (1usize << 31) + 2);
        assert!(!a.header().has(DIRTY), "cloning loses no reference");
        drop(extra);
        assert!(a.header().has(DIRTY), "the first drop made it a suspect");
        assert_eq!(Gc::strong_count(&a), (1usize << 31) - 3);
        let mut filed = false;
        crate::collector::state()
            .suspects(0)
            .each_header(|h| filed |= core::ptr::eq(h, a.header()));
        assert!(filed, "filed with the suspects");
        a.header().reset_strong_for_test(a.ptr, 1);
        let w = Gc::downgrade(&a);
        drop(a);
        assert!(w.upgrade().is_none());
    }

    /// A dirty object whose count does not fit beside the clean mark stays
    /// dirty through a full collection that keeps it, filed with the
    /// suspects; its drops take the slow path and find nothing to do.
    #[test]
    fn a_count_past_2_pow_31_keeps_an_object_dirty() {
        use crate::header::DIRTY;
        let a = Gc::new(core::cell::RefCell::new(None::<Gc<u64>>));
        drop(a.clone());
        assert!(a.header().has(DIRTY));
        let big = (1u32 << 31) + 5;
        a.header().set_strong_raw(big);
        // A full collection keeps it (the count is all from outside) and
        // cannot clean it.
        assert_eq!(crate::collect(), 0);
        assert!(a.header().has(DIRTY));
        let mut filed = false;
        crate::collector::state()
            .suspects(2)
            .each_header(|h| filed |= core::ptr::eq(h, a.header()));
        assert!(filed, "filed with the suspects of generation 2");
        // A drop from above 2^31 takes the slow path, which leaves it be.
        let b = a.clone();
        assert_eq!(Gc::strong_count(&a), big as usize + 1);
        drop(b);
        assert_eq!(Gc::strong_count(&a), big as usize);
        a.header().set_strong_raw(1);
        let w = Gc::downgrade(&a);
        drop(a);
        assert!(w.upgrade().is_none());
    }

    /// The hold and marks the search puts on every object it takes in, in
    /// one update: the clean mark's bias goes, the count gains one, and a
    /// count that would wrap spills as a clone's would. Acquitting restores
    /// the count and the flags as they were.
    #[test]
    fn condemn_and_acquit_restore_the_header() {
        use crate::header::DIRTY;
        let a = Gc::new(core::cell::RefCell::new(None::<Gc<u64>>));
        let h = a.header();
        let was = h.condemn(a.ptr);
        assert_eq!(was & (DIRTY | DROPPED | WEAK_CLEARED), 0, "clean before");
        assert!(h.has(DIRTY) && h.has(WEAK_CLEARED) && !h.has(DROPPED));
        assert_eq!(Gc::strong_count(&a), 2, "the hold is one reference");
        h.acquit(a.ptr, true, false);
        assert!(!h.has(DIRTY) && !h.has(WEAK_CLEARED));
        assert_eq!(Gc::strong_count(&a), 1);

        // A dirty object whose weak references were cleared once stays so.
        drop(a.clone());
        h.set(WEAK_CLEARED);
        let was = h.condemn(a.ptr);
        h.acquit(a.ptr, was & DIRTY == 0, was & WEAK_CLEARED != 0);
        assert!(h.has(DIRTY) && h.has(WEAK_CLEARED));
        assert_eq!(Gc::strong_count(&a), 1);
        h.clear(WEAK_CLEARED);

        // A dirty object holding the largest stored count spills, and comes
        // back from the table when acquitted.
        h.set_strong_raw(u32::MAX);
        h.condemn(a.ptr);
        assert_eq!(Gc::strong_count(&a), u32::MAX as usize + 1);
        h.acquit(a.ptr, false, false);
        assert_eq!(Gc::strong_count(&a), u32::MAX as usize);

        // Back to one handle: a live suspect, in the suspects' list.
        h.reset_strong_for_test(a.ptr, 1);
        assert!(Gc::try_get(&a).is_some());
        let w = Gc::downgrade(&a);
        drop(a);
        assert!(w.upgrade().is_none());
    }

    /// The search's fast condemnation declines, changing nothing, an object
    /// whose count is at the largest the header stores or partly in the
    /// side table; the search then condemns it the long way, and a
    /// collection that examines it keeps it with its count.
    #[test]
    fn try_condemn_leaves_large_counts_to_condemn() {
        use crate::header::DIRTY;
        let a = Gc::new(core::cell::RefCell::new(None::<Gc<u64>>));
        let h = a.header();
        // Clean: taken at once, as `condemn` would.
        let word = h.word_for_test();
        assert_eq!(h.try_condemn(), Some((1, word)));
        assert!(h.has(DIRTY) && h.has(WEAK_CLEARED));
        assert_eq!(Gc::strong_count(&a), 2);
        h.acquit(a.ptr, true, false);

        drop(a.clone());
        h.set_strong_raw(u32::MAX);
        let word = h.word_for_test();
        assert_eq!(h.try_condemn(), None);
        assert_eq!(
            (h.word_for_test(), Gc::strong_count(&a)),
            (word, u32::MAX as usize)
        );
        assert_eq!(crate::collect(), 0);
        assert_eq!(Gc::strong_count(&a), u32::MAX as usize);
        assert!(!h.has(WEAK_CLEARED), "acquitted");

        let b = a.clone();
        assert_eq!(Gc::strong_count(&a), u32::MAX as usize + 1);
        // A drop files it as a suspect, if the clone left it clean.
        drop(a.clone());
        assert!(h.has(DIRTY));
        assert_eq!(h.try_condemn(), None);
        assert_eq!(crate::collect(), 0);
        assert_eq!(Gc::strong_count(&a), u32::MAX as usize + 1);
        drop(b);

        h.reset_strong_for_test(a.ptr, 1);
        let w = Gc::downgrade(&a);
        drop(a);
        assert!(w.upgrade().is_none());
    }

    /// The last strong handle goes while the weak count is spilled: the
    /// value is dropped, the implicit weak reference comes off through the
    /// table, and the memory stays for the weak handles.
    fn death_with_a_spilled_weak_count<T: Trace + 'static>(value: T) {
        let a = Gc::new(value);
        let h = a.ptr;
        let last = Gc::downgrade(&a);
        // Pretend a few million weak handles exist, then cross the limit.
        a.header().set_weak_raw(Header::WEAK_MAX - 1);
        let weaks: Vec<_> = (0..3).map(|_| Gc::downgrade(&a)).collect();
        assert_eq!(Gc::weak_count(&a), Header::WEAK_MAX as usize + 1);
        drop(a);
        assert!(last.upgrade().is_none() && weaks[0].upgrade().is_none());
        drop(weaks);
        // SAFETY: `last` keeps the allocation alive. Only it is left of the
        // weak references, once the pretended ones are taken away.
        unsafe { h.as_ref() }.set_weak_raw(1);
        drop(last);
    }

    #[test]
    fn death_with_a_spilled_weak_count_untracked() {
        death_with_a_spilled_weak_count(7u64);
    }

    #[test]
    fn death_with_a_spilled_weak_count_tracked() {
        death_with_a_spilled_weak_count(core::cell::RefCell::new(None::<Gc<u64>>));
    }

    #[test]
    fn weak_count_spills_past_its_bits() {
        let a = Gc::new(7u64);
        let max = Header::WEAK_MAX as usize;
        // The stored weak count includes the implicit one of the strong side.
        a.header().set_weak_raw(Header::WEAK_MAX - 1);
        let weaks: Vec<_> = (0..4).map(|_| Gc::downgrade(&a)).collect();
        assert_eq!(Gc::weak_count(&a), max + 2);
        assert_eq!(weaks[0].upgrade().as_deref(), Some(&7));
        // The flags above the count are untouched.
        assert!(!a
            .header()
            .has(DROPPED | FINALIZED | HAS_CALLBACKS | WEAK_CLEARED));
        drop(weaks);
        assert_eq!(Gc::weak_count(&a), max - 2);
        a.header().set_weak_raw(1);
    }
}
