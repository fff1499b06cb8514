//! The memory layout of one object, and the per-type vtable.
//!
//! ```text
//!  tracked, vtable in its pool    tracked, vtable inline         untracked
//!                                 +--------------------------+
//!                                 | &VTable        (8 bytes) |
//! +--------------------------+    +--------------------------+
//! | Links.next     (8 bytes) |    | Links.next               |
//! | Links.prev     (8 bytes) |    | Links.prev               |
//! +--------------------------+    +--------------------------+    +--------------------------+
//! | Header.strong  (4 bytes) |<Gc | Header.strong            |<Gc | Header.strong  (4 bytes) |<Gc
//! | Header.word    (4 bytes) |    | Header.word              |    | Header.word    (4 bytes) |
//! +--------------------------+    +--------------------------+    +--------------------------+
//! | value: T                 |    | value: T                 |    | value: T                 |
//! ```
//!
//! A handle points at the [`Header`]; the [`Links`] of a tracked object sit
//! right before it, as CPython's `PyGC_Head` sits before the `PyObject`, and
//! the value right after it, at an offset that depends only on `T`. Every
//! pointer into the allocation (vtable, links, header, value) is derived from
//! the one raw pointer the allocator returned, by byte offsets, so it carries
//! the provenance of the whole allocation.
//!
//! # Where the vtable is
//!
//! The collector sees tracked objects only as links, and needs a [`VTable`]
//! to trace, finalize, drop and free them. A vtable pointer in every object
//! would cost 8 of the 32 bytes a tracked object carries besides its value,
//! so the pool allocator keeps it once per pool instead (the "big bag of
//! pages" of Lisp systems): the object is allocated from a pool that holds
//! only objects of its type, tagged with the vtable (`pool::alloc_tagged`),
//! and the collector finds the vtable by masking the object's address
//! (`pool::tag_of`). A tracked node with 32 bytes of user data then takes a
//! 56-byte block, 8 bytes more than an `Rc` of it asks `malloc` for.
//!
//! An object gets the inline layout, with its vtable pointer in front of its
//! links and `INLINE_VTABLE` set, when its box is too large for the pools,
//! when its thread has run out of tagged pool lists (more than
//! `pool::TAGGED_LISTS` tracked types in use), and always without the `pool`
//! feature. Untracked objects have no vtable at all: the collector never sees
//! them, and every path that frees them knows their type.
//!
//! # The word
//!
//! `word` holds the weak count in its low 23 bits and the flags above it:
//!
//! ```text
//! bits 0-22  weak count     including the implicit weak reference held by
//!                           the strong handles together, as in `Rc`
//! bit 23  FINALIZED         the finalizer ran; persists for the object's lifetime
//! bit 24  DROPPED           the value has been dropped; the handle is now inert
//! bit 25  WEAK_CLEARED      weak references were cleared by the collector
//! bit 26  HAS_CALLBACKS     the side table holds weak callbacks for this object
//! bits 27-28 generation     0, 1, 2, or 3 for the permanent (frozen) set
//! bit 29  DIRTY             lost a strong reference since last examined (see
//!                           `collector::dirty`)
//! bit 30  INLINE_VTABLE     the vtable pointer precedes the links
//! bit 31  STRONG_SPILLED    part of the strong count is in the side table
//! ```
//!
//! # The strong word
//!
//! `Gc::drop` must notice two events besides the decrement: the count
//! reaching zero, and a tracked object losing a reference while it is not
//! `DIRTY` (it then becomes a suspect, see `collector::dirty`). Testing the
//! flag on every drop cost about 15 % of a clone-and-drop pair (issue 3's
//! W2), so the strong word also says whether the object is clean:
//!
//! ```text
//! DIRTY set (and every untracked object):  strong = count
//! DIRTY clear (a clean tracked object):    strong = count + 2^31
//! ```
//!
//! `drop` decrements and takes its slow path when the result, read as an
//! `i32`, is at most zero: the count reached zero, or the object is clean.
//! A dirty object with a count of 2^31 or more takes the slow path too, which
//! then finds nothing to do. `clone` increments and takes its slow path when
//! the word wraps to zero. Each is one test, like `Rc`'s. Setting and clearing
//! `DIRTY` therefore re-encode the word ([`Header::set_dirty`],
//! [`Header::try_clean`]), and a dirty object whose count does not fit below
//! 2^31 stays dirty, which is always allowed.
//!
//! # Counts past their bits
//!
//! Neither count is capped: the excess spills into a per-thread side table
//! keyed by the object's address (see [`overflow`]), a path no real program
//! takes for the strong count (it needs two or four billion handles to one
//! object) and few for the weak count (eight million weak handles).
//!
//! - When `clone` wraps the strong word, half of what the word can hold
//!   (2^31 for a dirty object, 2^30 for a clean one) goes to the table and
//!   `STRONG_SPILLED` is set.
//! - When the stored strong count reaches zero, `STRONG_SPILLED` is checked
//!   before the object is destroyed; if set, up to that much comes back from
//!   the table, and the object lives on.
//!
//! The weak count is off the hot path and keeps the simpler scheme: it sits
//! at its maximum while the table holds the rest.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::{align_of, offset_of, size_of};
use core::ptr::{self, NonNull};

use crate::primitive::cell::Cell;
use crate::trace::{Trace, Tracer};
use overflow::Count;

/// Intrusive links of a tracked object in its generation's list.
///
/// Between collections `prev` is a real pointer. During the detection passes
/// of a collection it holds the scratch count `gc_refs` instead (see
/// `collector::passes`), so the real strong count is never touched.
#[repr(C)]
pub(crate) struct Links {
    pub(crate) next: Cell<*const Links>,
    pub(crate) prev: Cell<*const Links>,
}

impl Links {
    pub(crate) const fn new() -> Self {
        Links {
            next: Cell::new(ptr::null()),
            prev: Cell::new(ptr::null()),
        }
    }
}

/// Reference counts and flags, shared by tracked and untracked objects.
#[repr(C)]
pub(crate) struct Header {
    strong: Cell<u32>,
    /// The weak count and the flags; see the module docs.
    word: Cell<u32>,
}

const WEAK_BITS: u32 = 23;
/// The largest weak count the word holds; beyond it the count spills.
const WEAK_MAX: u32 = (1 << WEAK_BITS) - 1;
pub(crate) const FINALIZED: u32 = 1 << 23;
pub(crate) const DROPPED: u32 = 1 << 24;
pub(crate) const WEAK_CLEARED: u32 = 1 << 25;
pub(crate) const HAS_CALLBACKS: u32 = 1 << 26;
const GEN_SHIFT: u32 = 27;
const GEN_MASK: u32 = 0b11 << GEN_SHIFT;
pub(crate) const DIRTY: u32 = 1 << 29;
pub(crate) const INLINE_VTABLE: u32 = 1 << 30;
const STRONG_SPILLED: u32 = 1 << 31;
const _: () = {
    assert!(
        DIRTY == 1 << (GEN_SHIFT + 2),
        "`list_index` reads DIRTY as the bit above the generation"
    );
    assert!(
        FINALIZED == 1 << WEAK_BITS,
        "the flags start right above the weak count"
    );
};
/// The generation number stored for the permanent (frozen) set.
pub(crate) const PERMANENT: usize = 3;
/// Added to the strong count of a clean tracked object.
const CLEAN_BIAS: u32 = 1 << 31;
const _: () = assert!(
    DIRTY << 2 == CLEAN_BIAS,
    "`bias` shifts DIRTY into the bias"
);

/// A tracked object's box when its vtable is kept by its pool. With the
/// vtable inline, the same box follows a prefix (see [`TypeInfo::PREFIX`]).
#[repr(C)]
struct TrackedBox<T> {
    links: Links,
    header: Header,
    value: T,
}

#[repr(C)]
struct PlainBox<T> {
    header: Header,
    value: T,
}

/// What the collector needs to know about a type it only sees as a header.
pub(crate) struct VTable {
    pub(crate) trace: unsafe fn(NonNull<Header>, &mut Tracer<'_>),
    /// The full death of an object whose strong count reached zero.
    pub(crate) drop_slow: unsafe fn(NonNull<Header>),
    /// Drops the value of a garbage object in place, then releases the
    /// collector's reference, freeing the box if that was the last one.
    pub(crate) drop_garbage: unsafe fn(NonNull<Header>),
    pub(crate) finalize: Option<unsafe fn(NonNull<Header>)>,
    /// The box when the pool keeps the vtable.
    pub(crate) layout: Layout,
    /// The box with the vtable inline, and the bytes before the links.
    pub(crate) inline_layout: Layout,
    pub(crate) prefix: usize,
}

/// What a lost strong reference means, once [`Header::release`] said to look.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Released {
    /// The count reached zero.
    Dead,
    /// A clean tracked object lost a reference: it becomes a suspect.
    Suspect,
    /// Nothing to do (a dirty object holding 2^31 references or more).
    Alive,
}

/// Compile-time facts about the box of `T`.
pub(crate) struct TypeInfo<T>(PhantomData<T>);

impl<T: Trace + 'static> TypeInfo<T> {
    pub(crate) const TRACKED: bool = T::NEEDS_TRACE;

    /// The box: a [`TrackedBox`] (vtable kept by the pool) or a [`PlainBox`].
    pub(crate) const LAYOUT: Layout = if T::NEEDS_TRACE {
        Layout::new::<TrackedBox<T>>()
    } else {
        Layout::new::<PlainBox<T>>()
    };

    /// The bytes in front of a [`TrackedBox`] whose vtable is inline: a
    /// pointer, rounded up to the box's alignment so that the box stays
    /// aligned. The pointer is in the last 8 of them, right before the links.
    const PREFIX: usize = if align_of::<TrackedBox<T>>() > size_of::<&VTable>() {
        align_of::<TrackedBox<T>>()
    } else {
        size_of::<&VTable>()
    };

    /// The box of a tracked `T` with its vtable inline.
    pub(crate) const INLINE_LAYOUT: Layout = match Layout::from_size_align(
        Self::PREFIX + size_of::<TrackedBox<T>>(),
        align_of::<TrackedBox<T>>(),
    ) {
        Ok(l) => l,
        Err(_) => panic!("gencc: the type is too large for a Gc"),
    };

    /// Offset of the header in the box (in the box after the prefix, for the
    /// inline layout).
    const HEADER_OFFSET: usize = if T::NEEDS_TRACE {
        offset_of!(TrackedBox<T>, header)
    } else {
        offset_of!(PlainBox<T>, header)
    };

    /// Offset of the value from the header (not from the allocation); the
    /// same in both tracked layouts.
    pub(crate) const VALUE_OFFSET: usize = if T::NEEDS_TRACE {
        offset_of!(TrackedBox<T>, value) - offset_of!(TrackedBox<T>, header)
    } else {
        offset_of!(PlainBox<T>, value) - offset_of!(PlainBox<T>, header)
    };

    pub(crate) const VTABLE: VTable = VTable {
        trace: trace_erased::<T>,
        drop_slow: crate::gc::drop_slow_erased::<T>,
        drop_garbage: drop_garbage_erased::<T>,
        finalize: if T::HAS_FINALIZER {
            Some(crate::gc::finalize_erased::<T>)
        } else {
            None
        },
        layout: Self::LAYOUT,
        inline_layout: Self::INLINE_LAYOUT,
        prefix: Self::PREFIX,
    };

    /// Allocates a box for `value` with strong = 1, weak = 1 (the implicit
    /// weak reference shared by all strong ones, as in `Rc`), generation 0,
    /// unlinked.
    #[inline]
    pub(crate) fn allocate(value: T) -> NonNull<Header> {
        if !Self::TRACKED {
            let raw = alloc_object(Self::LAYOUT);
            // SAFETY: a fresh allocation of `LAYOUT`, so the offsets of the
            // same `#[repr(C)]` type are in bounds and aligned.
            // An untracked object is never clean: its count is stored plainly.
            return unsafe {
                Self::init(
                    raw.byte_add(Self::HEADER_OFFSET).cast(),
                    1,
                    1 | DIRTY,
                    value,
                )
            };
        }
        let vtable: &'static VTable = &TypeInfo::<T>::VTABLE;
        #[cfg(feature = "pool")]
        if let Some(raw) = crate::pool::alloc_tagged(Self::LAYOUT, NonNull::from(vtable).cast()) {
            // SAFETY: a fresh block of `LAYOUT` whose pool keeps `vtable` as
            // its tag, which is what `Header::vtable` reads for an object
            // without `INLINE_VTABLE`.
            return unsafe {
                raw.cast::<Links>().write(Links::new());
                Self::init(
                    raw.byte_add(Self::HEADER_OFFSET).cast(),
                    CLEAN_BIAS + 1,
                    1,
                    value,
                )
            };
        }
        let raw = alloc_object(Self::INLINE_LAYOUT);
        // SAFETY: a fresh allocation of `INLINE_LAYOUT`: the vtable pointer
        // fits in the last 8 bytes of the prefix (8-aligned, as the prefix
        // is a multiple of 8), and a `TrackedBox<T>` follows at `PREFIX`,
        // aligned because the prefix is a multiple of its alignment.
        unsafe {
            let links = raw.byte_add(Self::PREFIX).cast::<Links>();
            links
                .byte_sub(size_of::<&VTable>())
                .cast::<&'static VTable>()
                .write(vtable);
            links.write(Links::new());
            Self::init(
                links.byte_add(Self::HEADER_OFFSET).cast(),
                CLEAN_BIAS + 1,
                1 | INLINE_VTABLE,
                value,
            )
        }
    }

    /// Writes the header and the value.
    ///
    /// # Safety
    ///
    /// - `header` must be the header of a fresh box of `T`, derived from the
    ///   allocation.
    #[inline(always)]
    unsafe fn init(header: NonNull<Header>, strong: u32, word: u32, value: T) -> NonNull<Header> {
        // SAFETY: forwarded from the caller; the value follows the header at
        // `VALUE_OFFSET` in every layout of `T`.
        unsafe {
            header.write(Header {
                strong: Cell::new(strong),
                word: Cell::new(word),
            });
            header.byte_add(Self::VALUE_OFFSET).cast::<T>().write(value);
        }
        header
    }

    /// Whether the box of `T` at `header` has its vtable inline.
    ///
    /// # Safety
    ///
    /// - `header` must be the header of a live box of `T`.
    #[inline(always)]
    unsafe fn inline(header: NonNull<Header>) -> bool {
        // SAFETY: forwarded from the caller.
        Self::TRACKED && unsafe { header.as_ref() }.vtable_inline()
    }

    /// The bytes the box of `T` at `header` occupies in its allocator.
    ///
    /// # Safety
    ///
    /// - `header` must be the header of a live box of `T`.
    #[inline]
    pub(crate) unsafe fn allocated_size(header: NonNull<Header>) -> usize {
        // SAFETY: forwarded from the caller.
        if unsafe { Self::inline(header) } {
            allocated_size(Self::INLINE_LAYOUT)
        } else {
            allocated_size(Self::LAYOUT)
        }
    }

    /// Frees a box of `T`, with the layout known at compile time.
    ///
    /// # Safety
    ///
    /// - As for [`Header::deallocate`], and the box must be a box of `T`.
    #[inline(always)]
    pub(crate) unsafe fn deallocate(header: NonNull<Header>) {
        // SAFETY: the box of `T` starts `HEADER_OFFSET` bytes (plus the
        // prefix, with the vtable inline) before its header and was
        // allocated with the matching layout; the caller guarantees it is no
        // longer used.
        unsafe {
            let start = header.byte_sub(Self::HEADER_OFFSET).cast::<u8>();
            if Self::inline(header) {
                dealloc_object(start.byte_sub(Self::PREFIX), Self::INLINE_LAYOUT);
            } else {
                dealloc_object(start, Self::LAYOUT);
            }
        }
    }

    /// # Safety
    ///
    /// - `header` must point to the header of a live allocation made by
    ///   [`TypeInfo::<T>::allocate`].
    #[inline]
    pub(crate) unsafe fn value(header: NonNull<Header>) -> NonNull<T> {
        // SAFETY: by the caller's promise the allocation is a box of `T`, and
        // `VALUE_OFFSET` was computed from that box's layout.
        unsafe { header.byte_add(Self::VALUE_OFFSET).cast::<T>() }
    }
}

/// Memory for one object. Every object allocation goes through here and
/// [`dealloc_object`], so the allocator behind them can be swapped in one
/// place.
#[inline]
fn alloc_object(layout: Layout) -> NonNull<u8> {
    #[cfg(feature = "pool")]
    {
        crate::pool::alloc(layout)
    }
    #[cfg(not(feature = "pool"))]
    {
        // SAFETY: the layout is never zero-sized: it contains a `Header`.
        let raw = unsafe { std::alloc::alloc(layout) };
        match NonNull::new(raw) {
            Some(raw) => raw,
            None => std::alloc::handle_alloc_error(layout),
        }
    }
}

/// The bytes [`alloc_object`] sets aside for `layout`.
pub(crate) const fn allocated_size(layout: Layout) -> usize {
    #[cfg(feature = "pool")]
    {
        crate::pool::block_size_for(layout)
    }
    #[cfg(not(feature = "pool"))]
    {
        layout.size()
    }
}

/// # Safety
///
/// - `raw` must come from [`alloc_object`] with the same `layout`, and not be
///   used afterwards.
#[inline]
unsafe fn dealloc_object(raw: NonNull<u8>, layout: Layout) {
    // SAFETY: forwarded from the caller. With the pool: objects never leave
    // their thread (`Gc` is `!Send`), so the block is freed on the thread
    // that allocated it, and `raw` is derived from the pointer
    // `alloc_object` returned.
    #[cfg(feature = "pool")]
    unsafe {
        crate::pool::dealloc(raw, layout)
    }
    // SAFETY: forwarded from the caller.
    #[cfg(not(feature = "pool"))]
    unsafe {
        std::alloc::dealloc(raw.as_ptr(), layout)
    }
}

/// # Safety
///
/// - `header` must belong to a box of `T` whose value has not been dropped.
unsafe fn trace_erased<T: Trace + 'static>(header: NonNull<Header>, tracer: &mut Tracer<'_>) {
    // SAFETY: the caller guarantees the value is alive; the collector only
    // traces objects it holds in its lists, which are unlinked before their
    // value is dropped.
    unsafe { TypeInfo::<T>::value(header).as_ref() }.trace(tracer);
}

/// The end of one garbage object, behind the vtable so that the box is
/// freed with its layout known at compile time. If the value's `Drop`
/// panics, the collector's reference is not released here: the caller
/// releases it.
///
/// # Safety
///
/// - `header` must belong to a box of `T` whose value has not been dropped,
///   and no reference to the value may be alive.
/// - The caller must hold one strong reference to it, which this releases.
/// - The caller must set `DROPPED` first, so the value is never dropped twice
///   and handles to it refuse to dereference.
unsafe fn drop_garbage_erased<T: Trace + 'static>(header: NonNull<Header>) {
    // SAFETY: guaranteed by the caller; once the hold is the last strong
    // reference gone, the value is dropped and the count zero, as
    // `release_weak` requires.
    unsafe {
        ptr::drop_in_place(TypeInfo::<T>::value(header).as_ptr());
        if header.as_ref().dec_strong(header) {
            crate::gc::release_weak::<T>(header);
        }
    }
}

impl Header {
    /// Links of a tracked object.
    ///
    /// # Safety
    ///
    /// - `header` must belong to a tracked (`NEEDS_TRACE`) object's box, so
    ///   that links precede it in the same allocation.
    #[inline]
    pub(crate) unsafe fn links(header: NonNull<Header>) -> NonNull<Links> {
        // SAFETY: in a `TrackedBox` the links are `size_of::<Links>()` bytes
        // before the header (`repr(C)`, and the header's alignment, 4, needs
        // no padding after 16 bytes), and `header` carries the provenance of
        // the box.
        unsafe { header.byte_sub(size_of::<Links>()).cast() }
    }

    /// Header of a tracked object from its links.
    ///
    /// # Safety
    ///
    /// - `links` must be the links of a tracked object's box (not a list
    ///   sentinel).
    #[inline]
    pub(crate) unsafe fn from_links(links: NonNull<Links>) -> NonNull<Header> {
        // SAFETY: the inverse of `links`, with the same layout argument.
        unsafe { links.byte_add(size_of::<Links>()).cast() }
    }

    /// The vtable of a tracked object: in front of its links if
    /// `INLINE_VTABLE` is set, else the tag of its pool.
    ///
    /// # Safety
    ///
    /// - `header` must be the header of a live tracked object (its value may
    ///   be dropped; its memory must not be freed).
    #[inline]
    pub(crate) unsafe fn vtable(header: NonNull<Header>) -> &'static VTable {
        // SAFETY: forwarded from the caller.
        let links = unsafe { Header::links(header) };
        // SAFETY: the object is alive, so its header is readable.
        #[cfg(feature = "pool")]
        if !unsafe { header.as_ref() }.vtable_inline() {
            // SAFETY: an object without `INLINE_VTABLE` was allocated by
            // `TypeInfo::allocate` from `pool::alloc_tagged`, with its
            // `&'static VTable` as the tag, and its links start the block.
            return unsafe { &*crate::pool::tag_of(links.cast()).cast::<VTable>() };
        }
        // SAFETY: with `INLINE_VTABLE` (always, without the pool) the
        // allocation holds a `&'static VTable` right before the links.
        unsafe {
            links
                .byte_sub(size_of::<&VTable>())
                .cast::<&'static VTable>()
                .read()
        }
    }

    #[inline]
    pub(crate) fn has(&self, flag: u32) -> bool {
        self.word.get() & flag != 0
    }

    /// Whether a tracked object carries its vtable pointer in front of its
    /// links: `INLINE_VTABLE`, which every tracked object has without the
    /// pool (the constant lets the compiler drop the test there).
    #[inline(always)]
    fn vtable_inline(&self) -> bool {
        !cfg!(feature = "pool") || self.has(INLINE_VTABLE)
    }

    /// Sets flags other than `DIRTY` (see [`Header::set_dirty`]).
    #[inline]
    pub(crate) fn set(&self, flag: u32) {
        debug_assert!(flag & DIRTY == 0, "DIRTY changes the strong word too");
        self.word.set(self.word.get() | flag);
    }

    /// Clears flags other than `DIRTY` (see [`Header::try_clean`]).
    #[inline]
    pub(crate) fn clear(&self, flag: u32) {
        debug_assert!(flag & DIRTY == 0, "DIRTY changes the strong word too");
        self.word.set(self.word.get() & !flag);
    }

    /// What the strong word holds beyond the count: `CLEAN_BIAS` while the
    /// object is clean, else 0.
    #[inline(always)]
    fn bias(&self) -> u32 {
        (!self.word.get() & DIRTY) << 2
    }

    /// Marks the object `DIRTY`, taking the bias off its strong word. The
    /// caller files it in the right list.
    #[inline]
    pub(crate) fn set_dirty(&self) {
        let w = self.word.get();
        if w & DIRTY == 0 {
            self.strong.set(self.strong.get().wrapping_sub(CLEAN_BIAS));
            self.word.set(w | DIRTY);
        }
    }

    /// The collector takes its own strong reference on an object its search
    /// has taken in, and marks it `DIRTY` and `WEAK_CLEARED`, as it will be if
    /// it turns out to be garbage (see `collector::passes`): each word read
    /// and written once. Returns the flags as they were, which
    /// [`Header::acquit`] needs to undo this.
    #[inline(always)]
    pub(crate) fn condemn(&self, me: NonNull<Header>) -> u32 {
        let w = self.word.get();
        // Once `DIRTY` is set the word carries no bias: the count, plus one.
        let n = self.strong.get().wrapping_sub(self.bias()).wrapping_add(1);
        self.strong.set(n);
        self.word.set(w | DIRTY | WEAK_CLEARED);
        if n == 0 {
            // Wrapped, as in `inc_strong`: only a dirty object can hold the
            // largest count.
            self.spill_strong(me);
        }
        w
    }

    /// [`Header::condemn`] for the common object, whose whole count is in
    /// the header and below the largest it holds: no side table to read or
    /// write, so the caller's fast path makes no call. Returns the count
    /// before the hold and the flags as they were, or `None`, with nothing
    /// changed, for an object that needs `condemn`.
    #[inline(always)]
    pub(crate) fn try_condemn(&self) -> Option<(u32, u32)> {
        let w = self.word.get();
        let n = self.strong.get().wrapping_sub(self.bias());
        if w & STRONG_SPILLED != 0 || n == u32::MAX {
            return None;
        }
        self.strong.set(n + 1);
        self.word.set(w | DIRTY | WEAK_CLEARED);
        Some((n, w))
    }

    /// Undoes [`Header::condemn`] on an object found alive: the collector's
    /// reference goes, and `DIRTY` and `WEAK_CLEARED` are as they were
    /// (`was_clean`, `had_cleared`). Nothing may have changed the object's
    /// count since, but the collector's own hold.
    #[inline]
    pub(crate) fn acquit(&self, me: NonNull<Header>, was_clean: bool, had_cleared: bool) {
        let dead = self.dec_strong(me);
        debug_assert!(!dead, "an object found alive had no reference but the hold");
        if was_clean {
            // The count is what it was when the object was clean, so it
            // fits beside the clean mark again.
            let clean = self.try_clean();
            debug_assert!(clean);
        }
        if !had_cleared {
            self.clear(WEAK_CLEARED);
        }
    }

    /// Clears `DIRTY` if the stored count fits below the bias; says whether
    /// the object is clean now. One that stays dirty is only a suspect more.
    /// The caller files it in the right list.
    #[inline]
    pub(crate) fn try_clean(&self) -> bool {
        let w = self.word.get();
        if w & DIRTY != 0 {
            let n = self.strong.get();
            if n >= CLEAN_BIAS {
                return false;
            }
            self.strong.set(n + CLEAN_BIAS);
            self.word.set(w & !DIRTY);
        }
        true
    }

    #[inline]
    pub(crate) fn generation(&self) -> usize {
        ((self.word.get() & GEN_MASK) >> GEN_SHIFT) as usize
    }

    /// Which of the heap's eight lists a linked object is in: its generation
    /// number (bits 27-28), plus 4 if it is `DIRTY` (bit 29). The three bits
    /// are adjacent so that a death finds its list with a shift and a mask.
    #[inline]
    pub(crate) fn list_index(&self) -> usize {
        ((self.word.get() >> GEN_SHIFT) & 0b111) as usize
    }

    #[inline]
    pub(crate) fn set_generation(&self, gen: usize) {
        debug_assert!(gen <= PERMANENT);
        let w = self.word.get();
        self.word.set((w & !GEN_MASK) | ((gen as u32) << GEN_SHIFT));
    }

    #[inline]
    pub(crate) fn strong(&self, me: NonNull<Header>) -> usize {
        let n = self.strong.get().wrapping_sub(self.bias()) as usize;
        if self.has(STRONG_SPILLED) {
            n + overflow::get(me, Count::Strong)
        } else {
            n
        }
    }

    /// Whether the strong count is zero. At rest the stored part is zero
    /// only when nothing is spilled: the table is emptied back into the word
    /// as soon as the stored part reaches zero.
    #[inline]
    pub(crate) fn strong_is_zero(&self) -> bool {
        self.strong.get() == self.bias()
    }

    #[inline]
    pub(crate) fn inc_strong(&self, me: NonNull<Header>) {
        // Store, then test: one read-modify-write instruction and a branch,
        // as in `Rc`. Nothing can observe the wrapped word in between. A
        // clone-and-drop loop took 1.05 times `Rc`'s time this way, and 1.37
        // times when testing first (medians of 30 rounds on issue 3's
        // machine).
        let n = self.strong.get().wrapping_add(1);
        self.strong.set(n);
        if n == 0 {
            self.spill_strong(me);
        }
    }

    /// The strong word wrapped to zero: half of what it can hold goes to the
    /// table.
    #[cold]
    #[inline(never)]
    fn spill_strong(&self, me: NonNull<Header>) {
        // The word holds counts below 2^32 - bias; this one is 2^32 - bias.
        let half = ((1u64 << 32) - u64::from(self.bias())) / 2;
        overflow::add(me, Count::Strong, half as usize);
        self.strong.set(half as u32 + self.bias());
        self.set(STRONG_SPILLED);
    }

    /// The fast path of `Gc::drop` for a tracked object: decrements, and says
    /// whether [`Header::released`] must look further (the count reached
    /// zero, or the object is clean, or it holds 2^31 or more).
    #[inline(always)]
    pub(crate) fn release(&self) -> bool {
        let m = self.strong.get().wrapping_sub(1);
        self.strong.set(m);
        m as i32 <= 0
    }

    /// After [`Header::release`] asked for it: what the lost reference means,
    /// read from the header alone. `None`, with nothing changed, when the
    /// stored count reached zero while part of the count is in the side
    /// table: [`Header::released_spilled`] then tells.
    #[inline(always)]
    pub(crate) fn released(&self) -> Option<Released> {
        if self.strong.get() == self.bias() {
            if self.has(STRONG_SPILLED) {
                None
            } else {
                Some(Released::Dead)
            }
        } else {
            Some(self.lives_on())
        }
    }

    /// [`Header::released`] for the `None` case: the count comes back from
    /// the table, and the object lives on.
    pub(crate) fn released_spilled(&self, me: NonNull<Header>) -> Released {
        if self.refill_strong(me) {
            self.lives_on()
        } else {
            Released::Dead
        }
    }

    /// What losing a reference means to an object that still has some.
    #[inline(always)]
    fn lives_on(&self) -> Released {
        if self.has(DIRTY) {
            Released::Alive
        } else {
            Released::Suspect
        }
    }

    /// Returns `true` when the count reached zero. For every decrement but
    /// the hot path of a tracked object's `Gc::drop`.
    #[inline]
    pub(crate) fn dec_strong(&self, me: NonNull<Header>) -> bool {
        let m = self.strong.get().wrapping_sub(1);
        debug_assert!(
            m.wrapping_sub(self.bias()) < u32::MAX,
            "strong count underflow"
        );
        self.strong.set(m);
        m == self.bias() && !self.refill_strong(me)
    }

    /// The stored strong count reached zero: if the table holds more of it,
    /// moves up to half of what the word can hold back, and says so.
    #[inline]
    fn refill_strong(&self, me: NonNull<Header>) -> bool {
        self.has(STRONG_SPILLED) && self.refill_strong_slow(me)
    }

    #[cold]
    #[inline(never)]
    fn refill_strong_slow(&self, me: NonNull<Header>) -> bool {
        let half = ((1u64 << 32) - u64::from(self.bias())) / 2;
        let (taken, left) = overflow::take(me, Count::Strong, half as usize);
        debug_assert!(
            taken > 0,
            "STRONG_SPILLED is set only while the table holds some"
        );
        self.strong.set(taken as u32 + self.bias());
        if left == 0 {
            self.clear(STRONG_SPILLED);
        }
        true
    }

    /// Weak count including the implicit weak reference held by the strong
    /// references together.
    #[inline]
    pub(crate) fn weak(&self, me: NonNull<Header>) -> usize {
        let n = self.word.get() & WEAK_MAX;
        if n == WEAK_MAX {
            n as usize + overflow::get(me, Count::Weak)
        } else {
            n as usize
        }
    }

    #[inline]
    pub(crate) fn inc_weak(&self, me: NonNull<Header>) {
        let w = self.word.get();
        if w & WEAK_MAX == WEAK_MAX {
            overflow::add(me, Count::Weak, 1);
        } else {
            self.word.set(w + 1);
        }
    }

    /// [`Header::dec_weak`] without the side table: `None`, with nothing
    /// changed, when the stored count is at its largest (part of it may be
    /// in the table), for `dec_weak` to handle.
    #[inline(always)]
    pub(crate) fn dec_weak_in_header(&self) -> Option<bool> {
        let w = self.word.get();
        let n = w & WEAK_MAX;
        debug_assert!(n > 0);
        if n == WEAK_MAX {
            return None;
        }
        self.word.set(w - 1);
        Some(n == 1)
    }

    /// Returns `true` when the count reached zero.
    #[inline]
    pub(crate) fn dec_weak(&self, me: NonNull<Header>) -> bool {
        self.dec_weak_in_header().unwrap_or_else(|| {
            // At its largest in the word: the table gives one back if it
            // holds any, else the word does. Either way some are left.
            if overflow::take(me, Count::Weak, 1).0 == 0 {
                self.word.set(self.word.get() - 1);
            }
            false
        })
    }

    /// Sets the count the strong word stores (bias added), for tests of the
    /// spill.
    #[cfg(test)]
    pub(crate) fn set_strong_raw(&self, s: u32) {
        assert!(u64::from(s) + u64::from(self.bias()) <= u64::from(u32::MAX));
        self.strong.set(s + self.bias());
    }

    /// Empties this object's strong spill and stores `n`, for tests of the
    /// spill.
    #[cfg(test)]
    pub(crate) fn reset_strong_for_test(&self, me: NonNull<Header>, n: u32) {
        overflow::take(me, Count::Strong, usize::MAX);
        self.clear(STRONG_SPILLED);
        self.set_strong_raw(n);
    }

    /// The flags and weak word, for tests.
    #[cfg(test)]
    pub(crate) fn word_for_test(&self) -> u32 {
        self.word.get()
    }

    /// Sets the stored weak count directly, flags untouched, for tests of
    /// the spill.
    #[cfg(test)]
    pub(crate) fn set_weak_raw(&self, w: u32) {
        assert!(w <= WEAK_MAX);
        self.word.set((self.word.get() & !WEAK_MAX) | w);
    }

    /// The largest weak count the header holds, for tests of the spill.
    #[cfg(test)]
    pub(crate) const WEAK_MAX: u32 = WEAK_MAX;

    /// Frees the allocation of a tracked object. The value must already be
    /// dropped.
    ///
    /// # Safety
    ///
    /// - `header` must be the header of a live tracked box whose value was
    ///   dropped, and no handle may use it afterwards (strong and weak counts
    ///   are 0).
    pub(crate) unsafe fn deallocate(header: NonNull<Header>) {
        // SAFETY: the caller guarantees the box is alive, so its vtable is
        // readable; the allocation starts at the links (before them by the
        // prefix, with the vtable inline) and was made with the matching
        // layout.
        unsafe {
            let vt = Header::vtable(header);
            let links = Header::links(header).cast::<u8>();
            if header.as_ref().vtable_inline() {
                dealloc_object(links.byte_sub(vt.prefix), vt.inline_layout);
            } else {
                dealloc_object(links, vt.layout);
            }
        }
    }
}

/// Counts beyond what the header holds, kept off the hot path.
///
/// The table is per thread like the rest of the heap, keyed by the object's
/// address and the count. An entry exists only while it is positive, and
/// both counts are back in the header before they can reach zero, so an
/// object whose memory is freed leaves no entry behind for the next object
/// at its address.
pub(crate) mod overflow {
    use core::ptr::NonNull;
    use std::collections::HashMap;

    use super::Header;
    use crate::primitive::{cell::RefCell, thread_local};

    #[derive(Clone, Copy, PartialEq, Eq, Hash)]
    pub(crate) enum Count {
        Strong,
        Weak,
    }

    thread_local! {
        static SPILL: RefCell<HashMap<(usize, Count), usize>> = RefCell::new(HashMap::new());
    }

    fn with<R>(f: impl FnOnce(&mut HashMap<(usize, Count), usize>) -> R) -> R {
        SPILL
            .try_with(|t| f(&mut t.borrow_mut()))
            // The table is gone only during this thread's teardown; a count
            // past its header at that moment cannot be kept exactly, and
            // guessing could free a live object.
            .unwrap_or_else(|_| std::process::abort())
    }

    #[cold]
    pub(crate) fn get(me: NonNull<Header>, c: Count) -> usize {
        with(|t| t.get(&(me.addr().get(), c)).copied().unwrap_or(0))
    }

    #[cold]
    pub(crate) fn add(me: NonNull<Header>, c: Count, n: usize) {
        with(|t| {
            let e = t.entry((me.addr().get(), c)).or_insert(0);
            *e = e.checked_add(n).unwrap_or_else(|| std::process::abort());
        })
    }

    /// Takes up to `max` from the spilled part. Returns what it took and
    /// what is left.
    #[cold]
    pub(crate) fn take(me: NonNull<Header>, c: Count, max: usize) -> (usize, usize) {
        with(|t| {
            let key = (me.addr().get(), c);
            let Some(n) = t.get_mut(&key) else {
                return (0, 0);
            };
            let taken = max.min(*n);
            *n -= taken;
            let left = *n;
            if left == 0 {
                t.remove(&key);
            }
            (taken, left)
        })
    }
}
