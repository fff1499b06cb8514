//! Compile-failure tests for the handles: `Gc` and `Weak` are neither `Send`
//! nor `Sync` (each thread has its own heap). Stable Rust has no negative
//! trait assertion, so the check is a program that must not compile. Each case
//! in `tests/ui_handles/` is a `.rs` file next to the `.stderr` it must
//! produce; regenerate those with `TRYBUILD=overwrite cargo test --test
//! handles_ui` and review the diff.

#[test]
#[cfg_attr(miri, ignore)] // runs rustc; nothing for Miri to check
fn handles_are_thread_local() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui_handles/*.rs");
}
