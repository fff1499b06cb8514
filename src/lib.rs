//! Reference-counted pointers with a generational cycle collector, after
//! CPython's.
//!
//! # Reference counting
//!
//! A [`Gc<T>`] is a pointer with a count of the handles to its object, like
//! [`Rc<T>`](std::rc::Rc). Cloning a handle adds one; dropping one takes one
//! away; when the count reaches zero the value is dropped and its memory freed
//! on the spot. Most objects in most programs die this way, promptly and
//! cheaply, and the collector below never sees them.
//!
//! # Cycles
//!
//! Counting alone cannot free a cycle: in `a -> b -> a`, each object keeps the
//! other's count above zero after the program has dropped its last handle to
//! both. The collector finds such garbage without knowing the program's roots.
//! It takes the objects it is examining, copies each one's strong count into a
//! scratch counter, and then, for every edge between two examined objects,
//! subtracts one from the target's scratch count. What remains is the number of
//! references from *outside* the examined set: from the stack, from globals,
//! from older objects. An object with a remainder above zero is alive, and so
//! is everything it reaches; the rest is unreachable garbage. This is CPython's
//! `subtract_refs` (trial deletion). The real counts are only read, never
//! written, so a panic in the middle has nothing to undo.
//!
//! To find edges the collector asks each object through the [`Trace`] trait,
//! usually derived. Types that cannot hold a handle (`String`, `Vec<u64>`, …)
//! are known at compile time ([`Trace::NEEDS_TRACE`]) and are never examined at
//! all: a `Gc<String>` has an 8-byte header, where an `Rc<String>` has 16.
//!
//! # Generations
//!
//! Examining every object on every collection would make the cost grow with
//! the heap. Like CPython, the collector relies on most objects dying young:
//! tracked objects start in generation 0 and each collection of a generation
//! moves its survivors to the next one. Generation 0 is collected once the
//! number of tracked objects has grown by 700 since the last collection,
//! generation 1 after ten collections of generation 0, and generation 2 after
//! ten of generation 1, but only once the objects promoted into it since its
//! last collection make up a quarter of it. References from an older generation
//! into a younger one count as outside references, so a young collection only
//! touches young objects and costs the same however large the old heap is.
//! [`thresholds`], [`count`], [`stats`], [`freeze`] and the other free
//! functions of this crate are the counterparts of Python's `gc` module.
//!
//! # Suspects
//!
//! A cycle can only become garbage when one of its objects loses a handle
//! without dying, so dropping such a handle marks the object a suspect. A
//! collection whose generations hold no suspect has nothing to find and only
//! promotes. One that has suspects examines only what they reach: every piece
//! of garbage is reachable from a suspect. So a structure built by moving
//! handles into it costs no scan at all, the young objects still in use are
//! never traced, and a full collection after a burst of young garbage costs
//! what that garbage costs, not what the heap holds.
//!
//! # Destroying garbage
//!
//! Garbage is destroyed in the order PEP 442 fixes: first every [`Weak`]
//! reference to it is cleared; then the callbacks of weak references that are
//! not themselves garbage run; then each object's [`Finalize`] hook runs, at
//! most once in the object's life, while all of the garbage is still intact; a
//! finalizer may *resurrect* its object by storing a handle to it, so the
//! collector checks again, and what is reachable now survives. Only then are the
//! values dropped, one object after another, each object marked as dropped no
//! later than its value is: a `Drop` impl that reaches into a peer of its own
//! cycle finds it whole or gets a clear panic, never freed memory.
//!
//! # Deep structures
//!
//! Nothing in the crate recurses in the size of the object graph. The
//! collector's passes walk lists, arrays and an explicit stack, and dropping the head
//! of a million-node list defers each destruction past a small depth to a
//! queue that the outermost one empties (CPython's "trashcan").
//!
//! # Memory
//!
//! Reference counting makes and frees small objects at a furious rate, so by
//! default (feature `pool`) objects of up to 512 bytes come from a per-thread
//! small-object allocator after CPython's: fixed-size blocks in 4 KiB pools
//! carved from 256 KiB arenas, handed out and taken back by a few loads and
//! stores. Empty arenas are kept for the next growth and returned gradually,
//! and all of them when the thread exits.
//!
//! The collector needs each tracked type's vtable (how to trace, finalize,
//! drop and free its objects), and a pointer to it in every object would cost
//! 8 bytes each. With the pool, the objects of a tracked type get pools of
//! their own, which keep the vtable once per pool, so a tracked object carries
//! 24 bytes besides its value: its list links and the header. Tracked objects
//! too large or too aligned for the pools, those of a thread that already uses
//! 64 tracked types, and all of them without the `pool` feature carry the
//! vtable pointer themselves, 8 bytes more. An untracked object has no links
//! and no vtable, and carries only the 8-byte header (the two counts and the
//! flags) in every build. [`Gc::allocated_bytes`] tells what one object
//! occupies.
//!
//! # Threads
//!
//! `Gc` is neither `Send` nor `Sync`. Each thread has its own heap, with its
//! own generations, thresholds and statistics; when the thread exits, its heap
//! runs a final full collection.
//!
//! # Example
//!
//! ```
//! use std::cell::RefCell;
//! use gencc::{Gc, Trace, Weak};
//!
//! #[derive(Trace)]
//! struct TreeNode {
//!     name: &'static str,
//!     parent: RefCell<Option<Gc<TreeNode>>>, // a strong back edge: a cycle
//!     children: RefCell<Vec<Gc<TreeNode>>>,
//! }
//!
//! let root = Gc::new(TreeNode { name: "root", parent: RefCell::new(None), children: RefCell::default() });
//! let leaf = Gc::new(TreeNode { name: "leaf", parent: RefCell::new(Some(root.clone())), children: RefCell::default() });
//! root.children.borrow_mut().push(leaf.clone());
//! let watch: Weak<TreeNode> = Gc::downgrade(&leaf);
//!
//! drop((root, leaf));
//! assert!(watch.upgrade().is_some()); // the cycle keeps both alive
//! assert_eq!(gencc::collect(), 2);     // until the collector runs
//! assert!(watch.upgrade().is_none());
//! ```

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(rustdoc::broken_intra_doc_links)]

mod collector;
mod control;
mod gc;
mod header;
#[cfg(feature = "pool")]
#[doc(hidden)]
pub mod pool;
mod primitive;
mod trace;
mod weak;

pub use control::{
    collect, collect_generation, count, debug, disable, enable, freeze, freeze_count, is_enabled,
    is_tracked, register_callback, set_debug, set_thresholds, stats, thresholds, unfreeze,
    unregister_callback, CallbackId, CollectionInfo, Generation, GenerationStats,
    InvalidGeneration, Phase, DEBUG_STATS,
};
pub use gc::Gc;
pub use trace::{Finalize, Trace, Tracer};
pub use weak::Weak;

/// Derives [`Trace`](trait@Trace) for a struct or enum.
///
/// Every field is traced, except those marked `#[trace(skip)]`, which need
/// not implement `Trace` and are treated as references from outside the heap
/// (a handle in a skipped field keeps its target alive; cycles through it are
/// not collected). `#[trace(finalize)]` on the type calls its [`Finalize`]
/// impl. Type parameters get a `Trace` bound.
///
/// ```
/// use std::cell::RefCell;
/// use gencc::{Gc, Trace};
///
/// #[derive(Trace)]
/// enum Value {
///     Int(i64),
///     List(RefCell<Vec<Gc<Value>>>),
///     Native(#[trace(skip)] std::time::Instant),
/// }
///
/// let list = Gc::new(Value::List(RefCell::new(vec![Gc::new(Value::Int(1))])));
/// if let Value::List(items) = &*list {
///     items.borrow_mut().push(list.clone());
/// }
/// drop(list);
/// // The list and the int it holds: both are `Value`s, a tracked type.
/// assert_eq!(gencc::collect(), 2);
/// ```
#[cfg(feature = "derive")]
pub use gencc_derive::Trace;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
