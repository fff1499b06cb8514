//! The memory layout of one object, and the per-type vtable.
//!
//! ```text
//! tracked object (T::NEEDS_TRACE):       untracked object:
//! +------------------------------+
//! | Links.next        (8 bytes)  |
//! | Links.prev        (8 bytes)  |
//! +------------------------------+       +------------------------------+
//! | Header.meta       (8 bytes)  | <-Gc  | Header.meta       (8 bytes)  | <-Gc
//! | Header.strong     (4 bytes)  |       | Header.strong     (4 bytes)  |
//! | Header.weak       (4 bytes)  |       | Header.weak       (4 bytes)  |
//! +------------------------------+       +------------------------------+
//! | value: T                     |       | value: T                     |
//! ```
//!
//! A handle points at the [`Header`]; the [`Links`] of a tracked object sit
//! right before it, as CPython's `PyGC_Head` sits before the `PyObject`. Every
//! pointer into the allocation (links, header, value) is derived from the one
//! raw pointer the allocator returned, by byte offsets, so it carries the
//! provenance of the whole allocation.
//!
//! `meta` holds the address of the type's [`VTable`] with seven flag bits in
//! its low bits (the vtable is 128-byte aligned):
//!
//! ```text
//! bit 0  FINALIZED      the finalizer ran; persists for the object's lifetime
//! bit 1  DROPPED        the value has been dropped; the handle is now inert
//! bit 2  WEAK_CLEARED   weak references were cleared by the collector
//! bit 3  HAS_CALLBACKS  the side table holds weak callbacks for this object
//! bits 4-5 generation   0, 1, 2, or 3 for the permanent (frozen) set
//! bit 6  DIRTY          lost a strong reference since last examined (see
//!                       `collector::dirty`)
//! ```
//!
//! The counts are 32 bits each, so that the untracked header is as small as
//! `Rc`'s. A count that would pass `u32::MAX` is not capped: the excess spills
//! into a per-thread side table (see [`overflow`]), a path that costs one
//! comparison on `clone` until it is taken.

use core::alloc::Layout;
use core::marker::PhantomData;
use core::mem::offset_of;
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
    meta: Cell<*const VTable>,
    strong: Cell<u32>,
    weak: Cell<u32>,
}

pub(crate) const FINALIZED: usize = 1 << 0;
pub(crate) const DROPPED: usize = 1 << 1;
pub(crate) const WEAK_CLEARED: usize = 1 << 2;
pub(crate) const HAS_CALLBACKS: usize = 1 << 3;
const GEN_SHIFT: u32 = 4;
const GEN_MASK: usize = 0b11 << GEN_SHIFT;
pub(crate) const DIRTY: usize = 1 << 6;
const _: () = assert!(
    DIRTY == 1 << (GEN_SHIFT + 2),
    "`list_index` reads DIRTY as the bit above the generation"
);
const FLAG_MASK: usize = 0b111_1111;
/// The generation number stored for the permanent (frozen) set.
pub(crate) const PERMANENT: usize = 3;

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
#[repr(C, align(128))]
pub(crate) struct VTable {
    pub(crate) trace: unsafe fn(NonNull<Header>, &mut Tracer<'_>),
    /// The full death of an object whose strong count reached zero.
    pub(crate) drop_slow: unsafe fn(NonNull<Header>),
    /// Drops the value in place, nothing else.
    pub(crate) drop_value: unsafe fn(NonNull<Header>),
    pub(crate) finalize: Option<unsafe fn(NonNull<Header>)>,
    pub(crate) layout: Layout,
    pub(crate) header_offset: usize,
    pub(crate) type_name: fn() -> &'static str,
}

/// Compile-time facts about `GcBox<T>`.
pub(crate) struct TypeInfo<T>(PhantomData<T>);

impl<T: Trace + 'static> TypeInfo<T> {
    pub(crate) const TRACKED: bool = T::NEEDS_TRACE;

    pub(crate) const LAYOUT: Layout = if T::NEEDS_TRACE {
        Layout::new::<TrackedBox<T>>()
    } else {
        Layout::new::<PlainBox<T>>()
    };

    pub(crate) const HEADER_OFFSET: usize = if T::NEEDS_TRACE {
        offset_of!(TrackedBox<T>, header)
    } else {
        offset_of!(PlainBox<T>, header)
    };

    /// Offset of the value from the header (not from the allocation).
    pub(crate) const VALUE_OFFSET: usize = if T::NEEDS_TRACE {
        offset_of!(TrackedBox<T>, value) - offset_of!(TrackedBox<T>, header)
    } else {
        offset_of!(PlainBox<T>, value) - offset_of!(PlainBox<T>, header)
    };

    pub(crate) const VTABLE: VTable = VTable {
        trace: trace_erased::<T>,
        drop_slow: crate::gc::drop_slow_erased::<T>,
        drop_value: drop_value_erased::<T>,
        finalize: if T::HAS_FINALIZER {
            Some(crate::gc::finalize_erased::<T>)
        } else {
            None
        },
        layout: Self::LAYOUT,
        header_offset: Self::HEADER_OFFSET,
        type_name: core::any::type_name::<T>,
    };

    /// Allocates a box for `value` with strong = 1, weak = 1 (the implicit
    /// weak reference shared by all strong ones, as in `Rc`), unlinked.
    pub(crate) fn allocate(value: T) -> NonNull<Header> {
        let raw = alloc_object(Self::LAYOUT);
        let vtable: &'static VTable = &TypeInfo::<T>::VTABLE;
        // SAFETY: `raw` is a fresh allocation of `LAYOUT`, so the header,
        // links and value offsets computed by `offset_of!` on the same
        // `#[repr(C)]` type are in bounds and aligned.
        unsafe {
            let header = raw.byte_add(Self::HEADER_OFFSET).cast::<Header>();
            if Self::TRACKED {
                raw.cast::<Links>().write(Links::new());
            }
            header.write(Header {
                meta: Cell::new(vtable),
                strong: Cell::new(1),
                weak: Cell::new(1),
            });
            header.byte_add(Self::VALUE_OFFSET).cast::<T>().write(value);
            header
        }
    }

    /// Frees a box of `T`, with the layout known at compile time.
    ///
    /// # Safety
    ///
    /// - As for [`Header::deallocate`], and the box must be a box of `T`.
    #[inline]
    pub(crate) unsafe fn deallocate(header: NonNull<Header>) {
        // SAFETY: the box of `T` starts `HEADER_OFFSET` bytes before its
        // header and was allocated with `LAYOUT`; the caller guarantees it is
        // no longer used.
        unsafe { dealloc_object(header.byte_sub(Self::HEADER_OFFSET).cast(), Self::LAYOUT) }
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

/// # Safety
///
/// - `header` must belong to a box of `T` whose value has not been dropped,
///   and no reference to the value may be alive.
/// - The caller must set `DROPPED` first, so the value is never dropped twice
///   and handles to it refuse to dereference.
unsafe fn drop_value_erased<T: Trace + 'static>(header: NonNull<Header>) {
    // SAFETY: guaranteed by the caller.
    unsafe { ptr::drop_in_place(TypeInfo::<T>::value(header).as_ptr()) }
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
        // before the header (both are 8-aligned, so `repr(C)` adds no padding
        // between them), and `header` carries the provenance of the box.
        unsafe { header.byte_sub(core::mem::size_of::<Links>()).cast() }
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
        unsafe { links.byte_add(core::mem::size_of::<Links>()).cast() }
    }

    #[inline]
    pub(crate) fn vtable(&self) -> &'static VTable {
        let tagged = self.meta.get();
        let untagged = tagged.map_addr(|a| a & !FLAG_MASK);
        // SAFETY: `meta` always holds a `&'static VTable` (written at
        // allocation and only ever re-tagged) with flag bits in the low bits
        // that alignment leaves free.
        unsafe { &*untagged }
    }

    #[inline]
    pub(crate) fn flags(&self) -> usize {
        self.meta.get().addr() & FLAG_MASK
    }

    #[inline]
    pub(crate) fn has(&self, flag: usize) -> bool {
        self.flags() & flag != 0
    }

    #[inline]
    pub(crate) fn set(&self, flag: usize) {
        self.meta.set(self.meta.get().map_addr(|a| a | flag));
    }

    #[inline]
    pub(crate) fn clear(&self, flag: usize) {
        self.meta.set(self.meta.get().map_addr(|a| a & !flag));
    }

    #[inline]
    pub(crate) fn generation(&self) -> usize {
        (self.flags() & GEN_MASK) >> GEN_SHIFT
    }

    /// Which of the heap's eight lists a linked object is in: its generation
    /// number (bits 4-5), plus 4 if it is `DIRTY` (bit 6). The three bits are
    /// adjacent so that a death finds its list with a shift and a mask.
    #[inline]
    pub(crate) fn list_index(&self) -> usize {
        (self.flags() >> GEN_SHIFT) & 0b111
    }

    #[inline]
    pub(crate) fn set_generation(&self, gen: usize) {
        debug_assert!(gen <= PERMANENT);
        self.meta.set(
            self.meta
                .get()
                .map_addr(|a| (a & !GEN_MASK) | (gen << GEN_SHIFT)),
        );
    }

    #[inline]
    pub(crate) fn strong(&self, me: NonNull<Header>) -> usize {
        read(&self.strong, me, Count::Strong)
    }

    #[inline]
    pub(crate) fn inc_strong(&self, me: NonNull<Header>) {
        increment(&self.strong, me, Count::Strong);
    }

    /// Returns `true` when the count reached zero.
    #[inline]
    pub(crate) fn dec_strong(&self, me: NonNull<Header>) -> bool {
        decrement(&self.strong, me, Count::Strong)
    }

    /// Weak count including the implicit weak reference held by the strong
    /// references together.
    #[inline]
    pub(crate) fn weak(&self, me: NonNull<Header>) -> usize {
        read(&self.weak, me, Count::Weak)
    }

    #[inline]
    pub(crate) fn inc_weak(&self, me: NonNull<Header>) {
        increment(&self.weak, me, Count::Weak);
    }

    /// Returns `true` when the count reached zero.
    #[inline]
    pub(crate) fn dec_weak(&self, me: NonNull<Header>) -> bool {
        decrement(&self.weak, me, Count::Weak)
    }

    /// Sets the stored 32-bit strong count directly, for tests of the spill.
    #[cfg(test)]
    pub(crate) fn set_strong_raw(&self, s: u32) {
        self.strong.set(s);
    }

    /// Sets the stored 32-bit weak count directly, for tests of the spill.
    #[cfg(test)]
    pub(crate) fn set_weak_raw(&self, w: u32) {
        self.weak.set(w);
    }

    /// Frees the allocation. The value must already be dropped.
    ///
    /// # Safety
    ///
    /// - `header` must be the header of a live box whose value was dropped,
    ///   and no handle may use it afterwards (strong and weak counts are 0).
    pub(crate) unsafe fn deallocate(header: NonNull<Header>) {
        // SAFETY: the caller guarantees the box is alive, so its vtable is
        // readable; the allocation started `header_offset` bytes before the
        // header and was made with `layout`.
        unsafe {
            let vt = header.as_ref().vtable();
            let raw = header.byte_sub(vt.header_offset).cast::<u8>();
            dealloc_object(raw, vt.layout);
        }
    }
}

/// A count: the 32 bits in the header, plus the spill once they are full.
#[inline]
fn read(cell: &Cell<u32>, me: NonNull<Header>, c: Count) -> usize {
    let n = cell.get();
    if n == u32::MAX {
        n as usize + overflow::get(me, c)
    } else {
        n as usize
    }
}

#[inline]
fn increment(cell: &Cell<u32>, me: NonNull<Header>, c: Count) {
    let n = cell.get();
    if n == u32::MAX {
        overflow::inc(me, c);
    } else {
        cell.set(n + 1);
    }
}

/// Returns `true` when the count reached zero.
#[inline]
fn decrement(cell: &Cell<u32>, me: NonNull<Header>, c: Count) -> bool {
    let n = cell.get();
    debug_assert!(n > 0);
    if n == u32::MAX && overflow::dec(me, c) {
        return false;
    }
    cell.set(n - 1);
    n == 1
}

/// Counts beyond `u32::MAX`, kept off the hot path.
///
/// A header stores at most `u32::MAX`; once a count sits at that value, every
/// further increment goes to this table, keyed by the object's address, and
/// every decrement drains the table first. The table is per thread like the
/// rest of the heap. Reaching it needs four billion live handles to one object.
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
            // past four billion at that moment cannot be kept exactly, and
            // guessing could free a live object.
            .unwrap_or_else(|_| std::process::abort())
    }

    #[cold]
    pub(crate) fn get(me: NonNull<Header>, c: Count) -> usize {
        with(|t| t.get(&(me.addr().get(), c)).copied().unwrap_or(0))
    }

    #[cold]
    pub(crate) fn inc(me: NonNull<Header>, c: Count) {
        with(|t| {
            let e = t.entry((me.addr().get(), c)).or_insert(0);
            *e = e.checked_add(1).unwrap_or_else(|| std::process::abort());
        })
    }

    /// Takes one from the spilled part; `false` if there was none.
    #[cold]
    pub(crate) fn dec(me: NonNull<Header>, c: Count) -> bool {
        with(|t| {
            let key = (me.addr().get(), c);
            match t.get_mut(&key) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    true
                }
                Some(_) => {
                    t.remove(&key);
                    true
                }
                None => false,
            }
        })
    }
}
