//! Generation of the `unsafe impl ::gencc::Trace` block.
//!
//! The shape of the output, for `struct Pair<T> { a: T, #[trace(skip)] b: File }`:
//!
//! ```text
//! unsafe impl<T> ::gencc::Trace for Pair<T> where T: ::gencc::Trace {
//!     const NEEDS_TRACE: bool = <T as ::gencc::Trace>::NEEDS_TRACE;
//!     fn trace(&self, tracer: &mut ::gencc::Tracer<'_>) {
//!         match self { Self { a: __gencc_field_0, .. } => {
//!             <T as ::gencc::Trace>::trace(__gencc_field_0, tracer);
//!         } }
//!     }
//! }
//! ```
//!
//! Each field is named by its own type in `<T as Trace>`, with that type's
//! span, so a field whose type lacks `Trace` is reported at the field.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, Generics, Result, Type};

use crate::attr::{self, Errors};

/// The fields of one struct or variant that are traced (not skipped).
struct Shape<'a> {
    /// The path used in the pattern: `Self` or `Self::Variant`.
    path: TokenStream,
    /// Each traced field: the name or index it is matched by, and its type.
    traced: Vec<(syn::Member, &'a Type)>,
}

/// Expands `#[derive(Trace)]` on `input`, or returns every error found in it.
pub fn derive(input: &DeriveInput) -> Result<TokenStream> {
    let mut errors = Errors::default();
    let container = attr::container(&input.attrs, &mut errors);
    let shapes = shapes(input, &mut errors);
    let shapes = errors.finish(shapes)?;

    let name = &input.ident;
    let generics = with_trace_bounds(&input.generics);
    let (impl_generics, type_generics, where_clause) = generics.split_for_impl();

    let needs_trace = needs_trace(name, &shapes);
    let trace_body = trace_body(input, &shapes);
    let finalize = container.finalize.map(finalize_items);

    // The SAFETY argument is kept here, next to the `unsafe impl` it
    // justifies: comments are not tokens, so it cannot appear in the output.
    Ok(quote! {
        // SAFETY: `trace` reports each field that is not `#[trace(skip)]`
        // exactly once per call, by delegating to that field's own `Trace`
        // impl. The fields are owned by `self` (they are matched out of
        // `self`, never reached through a shared pointer), so every edge
        // reported is owned by this value. Skipped fields are never reported,
        // which only makes the handles they hold count as external references.
        // `trace` creates, clones, drops and stores no handle. `NEEDS_TRACE`
        // is `false` only when no traced field can hold a handle.
        #[automatically_derived]
        unsafe impl #impl_generics ::gencc::Trace for #name #type_generics #where_clause {
            const NEEDS_TRACE: bool = #needs_trace;

            #finalize

            #[inline]
            fn trace(&self, tracer: &mut ::gencc::Tracer<'_>) {
                #trace_body
            }
        }
    })
}

/// The traced fields of every struct or variant, in declaration order.
fn shapes<'a>(input: &'a DeriveInput, errors: &mut Errors) -> Vec<Shape<'a>> {
    match &input.data {
        Data::Struct(data) => vec![shape(quote!(Self), &data.fields, errors)],
        Data::Enum(data) => data
            .variants
            .iter()
            .map(|variant| {
                attr::variant(&variant.attrs, errors);
                let ident = &variant.ident;
                shape(quote!(Self::#ident), &variant.fields, errors)
            })
            .collect(),
        Data::Union(data) => {
            errors.push(Error::new_spanned(
                data.union_token,
                "`Trace` cannot be derived for unions: \
                 the collector cannot know which field is active",
            ));
            Vec::new()
        }
    }
}

/// The traced fields of one struct or variant.
fn shape<'a>(path: TokenStream, fields: &'a Fields, errors: &mut Errors) -> Shape<'a> {
    let traced = fields
        .members()
        .zip(fields)
        .filter(|(_, field)| attr::field(&field.attrs, errors).skip.is_none())
        .map(|(member, field)| (member, &field.ty))
        .collect();
    Shape { path, traced }
}

/// The generics of the input with `T: ::gencc::Trace` added for every type
/// parameter `T`, each bound spanned on its parameter.
fn with_trace_bounds(generics: &Generics) -> Generics {
    let mut generics = generics.clone();
    let bounds: Vec<syn::WherePredicate> = generics
        .type_params()
        .map(|param| {
            let ident = &param.ident;
            syn::parse_quote_spanned!(ident.span()=> #ident: ::gencc::Trace)
        })
        .collect();
    generics.make_where_clause().predicates.extend(bounds);
    generics
}

/// `<A as Trace>::NEEDS_TRACE || <B as Trace>::NEEDS_TRACE || ...` over every
/// traced field of every shape, or `false` when there is none.
///
/// A recursive type (`struct Tree { children: Vec<Tree> }`) is answered `true`
/// outright: its constant would otherwise be defined in terms of itself, which
/// the compiler rejects as a cycle. `true` is always a safe answer; it only
/// costs a header and scans for a type that turns out to hold no handle.
fn needs_trace(name: &Ident, shapes: &[Shape<'_>]) -> TokenStream {
    let types: Vec<&Type> = shapes
        .iter()
        .flat_map(|shape| &shape.traced)
        .map(|(_, ty)| *ty)
        .collect();
    if types.is_empty() {
        return quote!(false);
    }
    if types
        .iter()
        .any(|ty| names_type(ty.to_token_stream(), name))
    {
        return quote!(true);
    }
    let terms = types
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> <#ty as ::gencc::Trace>::NEEDS_TRACE));
    quote!(#(#terms)||*)
}

/// Whether `tokens` mention `Self` or `name`, the type being derived.
fn names_type(tokens: TokenStream, name: &Ident) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == *name || ident == "Self",
        TokenTree::Group(group) => names_type(group.stream(), name),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// A `match` on `self` with one arm per shape, each tracing its fields.
fn trace_body(input: &DeriveInput, shapes: &[Shape<'_>]) -> TokenStream {
    if matches!(&input.data, Data::Enum(data) if data.variants.is_empty()) {
        // No value of this type exists; `*self` makes the empty match legal.
        return quote! {
            let _ = tracer;
            match *self {}
        };
    }
    if shapes.iter().all(|shape| shape.traced.is_empty()) {
        return quote!(let _ = tracer;);
    }
    let arms = shapes.iter().map(|shape| {
        let path = &shape.path;
        let bindings: Vec<_> = (0..shape.traced.len())
            .map(|index| format_ident!("__gencc_field_{}", index))
            .collect();
        let members = shape.traced.iter().map(|(member, _)| member);
        let calls = shape.traced.iter().zip(&bindings).map(|((_, ty), binding)| {
            quote_spanned!(ty.span()=> <#ty as ::gencc::Trace>::trace(#binding, tracer);)
        });
        quote! {
            #path { #(#members: #bindings,)* .. } => { #(#calls)* }
        }
    });
    quote! {
        match self {
            #(#arms)*
        }
    }
}

/// The `HAS_FINALIZER` constant and the `finalize` forwarder, the call spanned
/// on the `finalize` key so that a missing `impl Finalize` is reported there.
fn finalize_items(span: Span) -> TokenStream {
    let call = quote_spanned!(span=> <Self as ::gencc::Finalize>::finalize(this));
    quote! {
        const HAS_FINALIZER: bool = true;

        #[inline]
        fn finalize(this: &::gencc::Gc<Self>)
        where
            Self: ::core::marker::Sized + 'static,
        {
            #call
        }
    }
}
