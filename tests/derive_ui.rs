//! Compile-failure tests for `#[derive(Trace)]`: every misuse must be
//! reported with a clear message at the offending tokens. Each case in
//! `tests/ui/` is a `.rs` file next to the `.stderr` it must produce;
//! regenerate those with `TRYBUILD=overwrite cargo test --test derive_ui`
//! and review the diff.

#[test]
#[cfg_attr(miri, ignore)] // runs rustc; nothing for Miri to check
fn derive_errors() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
