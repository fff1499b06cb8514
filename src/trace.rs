//! The [`Trace`] trait: how the collector sees the edges of the object graph.

use core::ptr::NonNull;

use crate::collector::passes::Visit;
use crate::header::Links;
use crate::weak::Registration;
use crate::Gc;

mod impls;

/// A type whose values may own [`Gc`] handles, and can show them to the
/// collector.
///
/// The collector never looks inside a value except through `trace`. It calls
/// `trace` to learn which tracked objects a value points to, and from that
/// alone decides what is garbage. A wrong answer in one direction only leaks;
/// a wrong answer in the other frees live memory. That asymmetry is the safety
/// contract.
///
/// Most types get this trait from `#[derive(Trace)]` (feature `derive`, on by
/// default), which upholds every rule below by construction.
///
/// # Safety
///
/// An implementation must follow these rules:
///
/// 1. **Never report an edge the value does not own.** `trace` may pass to the
///    tracer only handles that are stored in `self` (directly or in memory
///    `self` uniquely owns), and each such handle at most once per call. A
///    handle reached through shared ownership (an `Rc`, an `Arc`, a `&'static`)
///    must not be reported: the same strong count would be subtracted twice and
///    a live object could be freed.
/// 2. **Omitting an edge is allowed and only leaks.** A handle that is not
///    reported is treated as a reference from outside the heap: its target and
///    everything the target reaches stay alive. `#[trace(skip)]` relies on this.
/// 3. **`trace` must report the same edges every time it is called during one
///    collection.** It must not mutate the graph: no creating, cloning,
///    dropping, or storing of [`Gc`] or [`Weak`](crate::Weak) handles, and no
///    interior mutation of the memory it reads. (Reading through a `RefCell`
///    with `try_borrow`, as the provided impl does, is fine.)
/// 4. **`NEEDS_TRACE` may be `false` only if `trace` never reports a strong
///    edge.** A type that claims to need no tracing is allocated without a
///    collector header and is never scanned; if it did hold handles, the
///    cycles through it would leak (rule 2), which is safe but wrong.
/// 5. `trace` may panic. While the collector is searching for garbage, it
///    then restores every object and list it had touched, frees nothing, and
///    re-raises the panic. If the panic comes later, while the collector
///    traces the garbage to tell which weak references die with it, the
///    collection goes on (some of those callbacks may then run) and the panic
///    is re-raised at its end.
///
/// # Example
///
/// A hand-written implementation, equivalent to what the derive produces:
///
/// ```
/// use std::cell::RefCell;
/// use gencc::{Gc, Trace, Tracer};
///
/// struct Node {
///     label: String,
///     edges: RefCell<Vec<Gc<Node>>>,
/// }
///
/// // SAFETY: `edges` is the only field that can own handles, it is owned
/// // uniquely by the node, and it is reported exactly once.
/// unsafe impl Trace for Node {
///     fn trace(&self, tracer: &mut Tracer<'_>) {
///         self.edges.trace(tracer);
///     }
/// }
///
/// let a = Gc::new(Node { label: "a".into(), edges: RefCell::new(Vec::new()) });
/// a.edges.borrow_mut().push(a.clone()); // a self-cycle
/// drop(a);
/// assert_eq!(gencc::collect(), 1);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `gencc::Trace`",
    label = "the collector cannot see inside `{Self}`",
    note = "derive it with `#[derive(gencc::Trace)]`, or mark the field `#[trace(skip)]` if it holds no `Gc` handle"
)]
pub unsafe trait Trace {
    /// Whether a value of this type can own a handle to a tracked object.
    ///
    /// Decided at compile time. When it is `false`, `Gc<Self>` is allocated
    /// with the small 16-byte header of an untracked object, never enters a
    /// generation, never counts toward a threshold and is never scanned: the
    /// static counterpart of CPython leaving atoms such as `int` untracked.
    /// [`Gc`] itself always answers `true`, which is what lets recursive types
    /// such as `struct Node { next: Option<Gc<Node>> }` evaluate the constant.
    const NEEDS_TRACE: bool = true;

    /// Whether [`Trace::finalize`] does anything. When `false` the collector
    /// skips the call and [`Gc::is_finalized`] stays `false`, as CPython's
    /// `gc.is_finalized` does for objects without `__del__`.
    const HAS_FINALIZER: bool = false;

    /// Reports every handle this value owns to `tracer`, by calling `trace`
    /// on each field that may hold one.
    fn trace(&self, tracer: &mut Tracer<'_>);

    /// The PEP 442 finalizer hook; see [`Finalize`]. Only called when
    /// `HAS_FINALIZER` is `true`. `#[derive(Trace)]` with `#[trace(finalize)]`
    /// forwards it to [`Finalize::finalize`].
    fn finalize(this: &Gc<Self>)
    where
        Self: Sized + 'static,
    {
        let _ = this;
    }
}

/// A finalizer that runs once, while the object is still whole.
///
/// `finalize` runs at most once per object lifetime, just before the object
/// would be destroyed: when its last handle is dropped, or when the collector
/// finds it in unreachable garbage. In the second case every object of the
/// garbage is still intact while finalizers run (PEP 442), so a finalizer may
/// read its peers. It receives the object's own handle and may *resurrect* it
/// by storing a clone somewhere reachable; the object then lives on, and its
/// finalizer will not run again.
///
/// Implement this trait and add `#[trace(finalize)]` to the derive.
///
/// ```
/// use std::cell::Cell;
/// use gencc::{Finalize, Gc, Trace};
///
/// thread_local!(static FINALIZED: Cell<u32> = Cell::new(0));
///
/// #[derive(Trace)]
/// #[trace(finalize)]
/// struct Resource { id: u32 }
///
/// impl Finalize for Resource {
///     fn finalize(this: &Gc<Self>) {
///         FINALIZED.with(|f| f.set(f.get() + this.id));
///     }
/// }
///
/// drop(Gc::new(Resource { id: 7 }));
/// assert_eq!(FINALIZED.with(Cell::get), 7);
/// ```
pub trait Finalize: Trace + Sized + 'static {
    /// Called once before the object is destroyed; see the trait docs.
    fn finalize(this: &Gc<Self>);
}

/// The collector's view of one pass over the graph, handed to
/// [`Trace::trace`].
///
/// A `Tracer` cannot be created outside the crate; an implementation of
/// [`Trace`] only forwards it to the `trace` methods of its fields.
///
/// ```
/// use gencc::{Gc, Trace, Tracer};
///
/// struct Pair(Gc<u32>, Option<Gc<Pair>>);
///
/// // SAFETY: both fields are uniquely owned and reported once each.
/// unsafe impl Trace for Pair {
///     fn trace(&self, tracer: &mut Tracer<'_>) {
///         self.0.trace(tracer);
///         self.1.trace(tracer);
///     }
/// }
/// # let _ = Gc::new(Pair(Gc::new(1), None));
/// ```
pub struct Tracer<'a> {
    pub(crate) visit: &'a mut dyn Visit,
}

impl Tracer<'_> {
    /// Reports a strong edge to the tracked object whose links are `links`.
    #[inline]
    pub(crate) fn strong(&mut self, links: NonNull<Links>) {
        self.visit.strong(links);
    }

    /// Reports a weak handle that carries a callback registration.
    #[inline]
    pub(crate) fn weak(&mut self, registration: &Registration) {
        self.visit.weak(registration);
    }
}
