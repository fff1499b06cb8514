//! `#[derive(Trace)]` for [`gencc`](https://docs.rs/gencc).
//!
//! This crate is an implementation detail of `gencc`: do not depend on it
//! directly. `gencc` re-exports the macro as `gencc::Trace`, under the same
//! name as the trait it implements, behind its default feature `derive`. One
//! `use gencc::Trace;` therefore brings both into scope:
//!
//! ```
//! use std::cell::RefCell;
//! use gencc::{Gc, Trace};
//!
//! #[derive(Trace)]
//! struct Node {
//!     name: String,
//!     next: RefCell<Option<Gc<Node>>>,
//! }
//!
//! let a = Gc::new(Node { name: "a".into(), next: RefCell::new(None) });
//! let b = Gc::new(Node { name: "b".into(), next: RefCell::new(Some(a.clone())) });
//! *a.next.borrow_mut() = Some(b.clone()); // a -> b -> a
//! drop((a, b));
//! assert_eq!(gencc::collect(), 2);
//! ```
//!
//! See [`macro@Trace`] for what the derive generates and the attributes it
//! accepts.

mod attr;
mod expand;

use proc_macro::TokenStream;

/// Implements `gencc::Trace` for a struct or an enum by tracing every field.
///
/// The generated `trace` reports each field, in declaration order, through
/// that field's own `Trace` impl; `NEEDS_TRACE` is `true` if any traced field's
/// type has `NEEDS_TRACE`, so a type made only of plain data (`u32`, `String`,
/// ...) is allocated as an untracked object. Named, tuple and unit structs and
/// enums with any kind of variants are accepted, with lifetime, type and const
/// parameters; every type parameter `T` gets a `T: Trace` bound. The type does
/// not have to be `'static` (only `Gc::new` requires that).
///
/// A field whose type names the type being derived (`Vec<Tree>` inside
/// `Tree`, or `Self`) makes `NEEDS_TRACE` simply `true`, because the constant
/// cannot be computed from itself; `true` is always a safe answer. Two types
/// that contain each other directly rather than through `Gc` (`A` holds a
/// `Vec<B>` and `B` a `Vec<A>`) still make the compiler report a cycle:
/// implement `Trace` by hand for one of them.
///
/// # Attributes
///
/// * `#[trace(skip)]` on a field: the field is not traced, does not count
///   toward `NEEDS_TRACE`, and its type needs no `Trace` impl. This is always
///   safe: a handle the collector is not told about counts as a reference from
///   outside the heap, so whatever it points to is kept alive (a cycle through
///   a skipped field is never collected).
/// * `#[trace(finalize)]` on the type: sets `HAS_FINALIZER` and forwards
///   `Trace::finalize` to your `impl gencc::Finalize`, which must exist.
///
/// ```
/// use std::cell::{Cell, RefCell};
/// use std::fs::File;
/// use gencc::{Finalize, Gc, Trace};
///
/// thread_local!(static CLOSED: Cell<u32> = Cell::new(0));
///
/// #[derive(Trace)]
/// #[trace(finalize)]
/// struct Handle {
///     #[trace(skip)] // `File` holds no `Gc` and does not implement `Trace`
///     file: Option<File>,
///     peers: RefCell<Vec<Gc<Handle>>>,
/// }
///
/// impl Finalize for Handle {
///     fn finalize(_this: &Gc<Self>) {
///         CLOSED.with(|closed| closed.set(closed.get() + 1));
///     }
/// }
///
/// // `Gc<Tree<T>>` needs `Tree<T>: Trace + 'static`, hence the bounds.
/// #[derive(Trace)]
/// enum Tree<T: Trace + 'static> {
///     Empty,
///     Leaf(T),
///     Pair { left: Gc<Tree<T>>, right: Gc<Tree<T>> },
/// }
///
/// assert!(<Handle as Trace>::NEEDS_TRACE);
/// assert!(<Tree<u8> as Trace>::NEEDS_TRACE); // `Pair` holds handles
///
/// drop(Gc::new(Handle { file: None, peers: RefCell::new(Vec::new()) }));
/// assert_eq!(CLOSED.with(Cell::get), 1);
/// # let _ = Gc::new(Tree::<u8>::Empty);
/// ```
///
/// # Errors
///
/// The derive reports, at the offending tokens: unions (the collector cannot
/// know which field is active), unknown keys, `skip` or `finalize` written in
/// the wrong place or given a value, repeated keys, and `#[trace(...)]` on an
/// enum variant.
///
/// ```compile_fail
/// #[derive(gencc::Trace)]
/// union Bits { int: u32, float: f32 }
/// ```
#[proc_macro_derive(Trace, attributes(trace))]
pub fn derive_trace(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
