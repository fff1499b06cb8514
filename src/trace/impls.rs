//! [`Trace`] for standard-library types and for the collections of the
//! crate's own dependencies (`indexmap`, `smallvec`).
//!
//! Three kinds of implementation live here:
//!
//! - **Leaves** hold no handles: `NEEDS_TRACE = false` and an empty `trace`.
//! - **Owning containers** trace every element they own; they need tracing
//!   exactly when one of their element types does.
//! - **Shared owners** (`Rc`, `Arc` and their `Weak`s) are opaque. See the
//!   comment on their impls.

use core::any::TypeId;
use core::cmp::Ordering;
use core::marker::PhantomData;
use core::num::{
    NonZeroI128, NonZeroI16, NonZeroI32, NonZeroI64, NonZeroI8, NonZeroIsize, NonZeroU128,
    NonZeroU16, NonZeroU32, NonZeroU64, NonZeroU8, NonZeroUsize,
};
use core::ops::{Range, RangeInclusive};
use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, LinkedList, VecDeque};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use indexmap::{IndexMap, IndexSet};
use smallvec::SmallVec;

use super::{Trace, Tracer};
use crate::primitive::cell::{Cell, RefCell};

/// Traces each item, or skips the iteration entirely when `T` cannot hold a
/// handle.
#[inline]
fn trace_all<'a, T: Trace + 'a>(items: impl IntoIterator<Item = &'a T>, tracer: &mut Tracer<'_>) {
    // No shortcut on `T::NEEDS_TRACE`: a `Weak` reports its callback
    // registration although it needs no tracking. For element types whose
    // `trace` is empty the loop compiles away.
    for item in items {
        item.trace(tracer);
    }
}

macro_rules! leaf {
    ($([$($generics:tt)*] $ty:ty),* $(,)?) => {$(
        // SAFETY: `trace` reports nothing, which rule 2 always permits, and a
        // type that never reports an edge may set `NEEDS_TRACE = false`
        // (rule 4). The plain-data types hold no handles at all; for the
        // shared owners, see the comment on their invocation.
        unsafe impl<$($generics)*> Trace for $ty {
            const NEEDS_TRACE: bool = false;

            #[inline]
            fn trace(&self, _: &mut Tracer<'_>) {}
        }
    )*};
    ($($ty:ty),* $(,)?) => {
        leaf! { $([] $ty),* }
    };
}

leaf! {
    bool, char, (),
    u8, u16, u32, u64, u128, usize,
    i8, i16, i32, i64, i128, isize,
    f32, f64,
    NonZeroU8, NonZeroU16, NonZeroU32, NonZeroU64, NonZeroU128, NonZeroUsize,
    NonZeroI8, NonZeroI16, NonZeroI32, NonZeroI64, NonZeroI128, NonZeroIsize,
    str, String, &'static str,
    OsStr, OsString, CStr, CString, Path, PathBuf,
    Duration, Instant, SystemTime,
    Ordering, TypeId,
}

leaf! {
    [T: ?Sized] PhantomData<T>,
}

// Shared owners are opaque. Every clone of an `Rc` reaches the same value, so
// if `Rc<T>` traced `T`, each handle inside it would be reported once per
// clone while its strong count holds it only once; the collector would then
// count it as unreferenced and could free a live object. Reporting nothing
// instead treats those handles as external (rule 2): a cycle that passes
// through an `Rc` or `Arc` is never collected. Use `Gc` for shared ownership
// inside a cycle.
leaf! {
    [T: ?Sized] std::rc::Rc<T>,
    [T: ?Sized] std::rc::Weak<T>,
    [T: ?Sized] std::sync::Arc<T>,
    [T: ?Sized] std::sync::Weak<T>,
}

// Owning containers. Each element belongs to its container alone and is
// visited exactly once, so every handle it holds is reported once (rule 1);
// visiting through `&self` mutates nothing (rule 3); and `NEEDS_TRACE` is the
// `||` of the element types' flags, so it is `false` only when no element can
// report an edge (rule 4). The SAFETY comments below call this "the container
// argument".

// SAFETY: the container argument; a `Box` is the sole owner of its pointee.
unsafe impl<T: ?Sized + Trace> Trace for Box<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        (**self).trace(tracer);
    }
}

// SAFETY: the container argument, for the value if there is one.
unsafe impl<T: Trace> Trace for Option<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if let Some(value) = self {
            value.trace(tracer);
        }
    }
}

// SAFETY: the container argument, for whichever variant is present.
unsafe impl<T: Trace, E: Trace> Trace for Result<T, E> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE || E::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        match self {
            Ok(value) => value.trace(tracer),
            Err(error) => error.trace(tracer),
        }
    }
}

// SAFETY: the container argument, for the two bounds.
unsafe impl<T: Trace> Trace for Range<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.start.trace(tracer);
        self.end.trace(tracer);
    }
}

// SAFETY: the container argument, for the two bounds.
unsafe impl<T: Trace> Trace for RangeInclusive<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        self.start().trace(tracer);
        self.end().trace(tracer);
    }
}

macro_rules! sequence {
    ($([$($generics:tt)*] $ty:ty),* $(,)?) => {$(
        // SAFETY: the container argument.
        unsafe impl<$($generics)*> Trace for $ty {
            const NEEDS_TRACE: bool = T::NEEDS_TRACE;

            #[inline]
            fn trace(&self, tracer: &mut Tracer<'_>) {
                trace_all(self, tracer);
            }
        }
    )*};
}

sequence! {
    [T: Trace] [T],
    [T: Trace, const N: usize] [T; N],
    [T: Trace] Vec<T>,
    [T: Trace] VecDeque<T>,
    [T: Trace] LinkedList<T>,
    [T: Trace] BinaryHeap<T>,
    [T: Trace] BTreeSet<T>,
    [T: Trace, S] HashSet<T, S>,
    [T: Trace, S] IndexSet<T, S>,
}

// SAFETY: the container argument.
unsafe impl<A: smallvec::Array> Trace for SmallVec<A>
where
    A::Item: Trace,
{
    const NEEDS_TRACE: bool = <A::Item as Trace>::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        trace_all(self.iter(), tracer);
    }
}

macro_rules! map {
    ($([$($generics:tt)*] $ty:ty),* $(,)?) => {$(
        // SAFETY: the container argument; keys and values are visited in
        // separate passes, each entry once per pass.
        unsafe impl<$($generics)*> Trace for $ty {
            const NEEDS_TRACE: bool = K::NEEDS_TRACE || V::NEEDS_TRACE;

            #[inline]
            fn trace(&self, tracer: &mut Tracer<'_>) {
                trace_all(self.keys(), tracer);
                trace_all(self.values(), tracer);
            }
        }
    )*};
}

map! {
    [K: Trace, V: Trace] BTreeMap<K, V>,
    [K: Trace, V: Trace, S] HashMap<K, V, S>,
    [K: Trace, V: Trace, S] IndexMap<K, V, S>,
}

macro_rules! tuple {
    ($($name:ident)+) => {
        // SAFETY: the container argument, for each field.
        unsafe impl<$($name: Trace),+> Trace for ($($name,)+) {
            const NEEDS_TRACE: bool = $($name::NEEDS_TRACE)||+;

            #[inline]
            #[allow(non_snake_case)]
            fn trace(&self, tracer: &mut Tracer<'_>) {
                let ($($name,)+) = self;
                $($name.trace(tracer);)+
            }
        }
    };
}

/// Implements `Trace` for the tuple of all the given names, then for each of
/// its suffixes: arities 12 down to 1.
macro_rules! tuples {
    () => {};
    ($first:ident $($rest:ident)*) => {
        tuple!($first $($rest)*);
        tuples!($($rest)*);
    };
}

tuples!(A B C D E F G H I J K L);

// SAFETY: `Cell` owns its value uniquely, so reporting what the value reports
// follows rule 1, and `NEEDS_TRACE` is the value's own (rule 4). For the read,
// see the comment in `trace`.
unsafe impl<T: ?Sized + Trace> Trace for Cell<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // SAFETY: the shared reference lives only for this call, and nothing
        // writes the cell meanwhile. Rule 3 forbids this `trace`, and every
        // `trace` it calls, from mutating; `Cell` is `!Sync`, so no other
        // thread reaches it while the single-threaded collector runs; and
        // a `&Cell` never lends out a reference to its contents, so no `&mut T`
        // obtained through the cell can be live at this point either.
        let value = unsafe { &*self.as_ptr() };
        value.trace(tracer);
    }
}

// SAFETY: `RefCell` owns its value uniquely, so reporting what the value
// reports follows rule 1, and `NEEDS_TRACE` is the value's own (rule 4). It
// reads the borrow flag and writes nothing, which rule 3 allows.
unsafe impl<T: ?Sized + Trace> Trace for RefCell<T> {
    const NEEDS_TRACE: bool = T::NEEDS_TRACE;

    #[inline]
    fn trace(&self, tracer: &mut Tracer<'_>) {
        // A cell that is mutably borrowed reports nothing, so its children
        // count as externally referenced (rule 2) and survive this collection.
        // This is what keeps an automatic collection, triggered by `Gc::new`
        // while the caller holds `borrow_mut()`, from freeing or panicking on
        // what the caller is editing. The borrow cannot change during one
        // collection, so the answer stays the same throughout (rule 3).
        //
        // The unguarded borrow leaves the flag alone: tracing then writes
        // nothing to the objects it reads, which keeps their cache lines
        // clean through the marking scan.
        // SAFETY: the reference lives only for the `trace` call below, and
        // nothing can borrow the cell mutably meanwhile: only `Trace` impls
        // run inside it, and rule 3 forbids them any interior mutation of what
        // they read, this cell included.
        if let Ok(value) = unsafe { self.try_borrow_unguarded() } {
            value.trace(tracer);
        }
    }
}
