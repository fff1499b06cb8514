//! Parsing of the `#[trace(...)]` helper attributes.
//!
//! Two keys exist, each valid in exactly one place:
//!
//! * `finalize`, on the type: forward `Trace::finalize` to `Finalize::finalize`;
//! * `skip`, on a field: neither trace the field nor count it in `NEEDS_TRACE`.
//!
//! Neither takes a value, and neither may be repeated. Every mistake becomes a
//! [`syn::Error`] spanned on the offending tokens; all the mistakes of one
//! derive are reported together.

use proc_macro2::Span;
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Error, Result};

/// Where a `#[trace(...)]` attribute was written; each place has one key.
#[derive(Clone, Copy)]
enum Place {
    Container,
    Field,
}

impl Place {
    /// The only key accepted at this place.
    const fn key(self) -> &'static str {
        match self {
            Self::Container => "finalize",
            Self::Field => "skip",
        }
    }
}

/// What the type-level `#[trace(...)]` attributes asked for.
pub struct ContainerAttrs {
    /// The span of the `finalize` key, if present.
    pub finalize: Option<Span>,
}

/// What a field's `#[trace(...)]` attributes asked for.
pub struct FieldAttrs {
    /// The span of the `skip` key, if present.
    pub skip: Option<Span>,
}

/// Collects the errors of one derive so that all of them are reported at once.
#[derive(Default)]
pub struct Errors(Option<Error>);

impl Errors {
    /// Records `error`.
    pub fn push(&mut self, error: Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// `Ok(value)` if nothing was recorded, otherwise every recorded error.
    pub fn finish<T>(self, value: T) -> Result<T> {
        self.0.map_or(Ok(value), Err)
    }
}

/// Parses the `#[trace(...)]` attributes written on the type itself.
pub fn container(attrs: &[Attribute], errors: &mut Errors) -> ContainerAttrs {
    ContainerAttrs {
        finalize: find_key(attrs, Place::Container, errors),
    }
}

/// Parses the `#[trace(...)]` attributes written on one field.
pub fn field(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    FieldAttrs {
        skip: find_key(attrs, Place::Field, errors),
    }
}

/// Rejects any `#[trace(...)]` attribute on an enum variant: a variant has no
/// key of its own (its fields take `skip`).
pub fn variant(attrs: &[Attribute], errors: &mut Errors) {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("trace")) {
        errors.push(Error::new_spanned(
            attr,
            "`#[trace(...)]` is not accepted on an enum variant; \
             put `#[trace(skip)]` on the variant's fields instead",
        ));
    }
}

/// The span of the key of `place` in the `#[trace(...)]` attributes of
/// `attrs`, if it is there. Records an error for every other key, for a key
/// given a value, and for a repeated key.
fn find_key(attrs: &[Attribute], place: Place, errors: &mut Errors) -> Option<Span> {
    let mut found = None;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("trace")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let key = known_key(&meta, place)?;
            reject_value(&meta, key)?;
            if found.is_some() {
                return Err(Error::new_spanned(
                    &meta.path,
                    format!("duplicate `{key}` attribute"),
                ));
            }
            found = Some(meta.path.span());
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    found
}

/// Checks that the key of `meta` is the one accepted at `place`.
fn known_key(meta: &ParseNestedMeta<'_>, place: Place) -> Result<&'static str> {
    let expected = place.key();
    if meta.path.is_ident(expected) {
        return Ok(expected);
    }
    let message = if meta.path.is_ident("skip") {
        "`skip` belongs on a field, not on the type: it leaves that one field untraced".to_owned()
    } else if meta.path.is_ident("finalize") {
        "`finalize` belongs on the type (`#[trace(finalize)]` above the `struct` or `enum`), \
         not on a field"
            .to_owned()
    } else {
        let key = meta.path.to_token_stream().to_string().replace(' ', "");
        let place = match place {
            Place::Container => "a type",
            Place::Field => "a field",
        };
        format!("unknown `trace` attribute `{key}`; on {place} the only key is `{expected}`")
    };
    Err(Error::new_spanned(&meta.path, message))
}

/// Errors if `key` was given a value, as in `skip = true` or `skip(x)`.
fn reject_value(meta: &ParseNestedMeta<'_>, key: &str) -> Result<()> {
    let has_value = if meta.input.peek(syn::Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
        true
    } else if meta.input.peek(syn::token::Paren) {
        let _content;
        syn::parenthesized!(_content in meta.input);
        true
    } else {
        false
    };
    if has_value {
        // `meta.error` spans the key and the value just consumed.
        return Err(meta.error(format!("`{key}` takes no value; write `#[trace({key})]`")));
    }
    Ok(())
}
