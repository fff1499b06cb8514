//! Stack-safe destruction: CPython's "trashcan", for Rust drop glue.
//!
//! Dropping the last handle to the head of a million-node list drops the
//! head's value, which drops the handle to the second node, which drops its
//! value, and so on: plain reference counting recurses once per node and
//! overflows the stack. Here a destruction that starts while
//! [`MAX_DEPTH`] others are already in progress on the stack is not run: the
//! object is unlinked and parked on [`State::trash`], and the outermost
//! destruction empties that queue in a loop once its own work is done. The
//! stack therefore holds at most `MAX_DEPTH` nested destructions, whatever the
//! shape of the graph.
//!
//! Only tracked types pass through here. An untracked type holds no handle
//! (its `Trace::NEEDS_TRACE` is `false`), so its destruction cannot cascade.

use core::ptr::NonNull;

use super::{state, State};

use crate::header::Header;
use crate::trace::Trace;

/// Nested destructions allowed before deferring.
///
/// Invariant: each level costs a handful of frames of drop glue (around a
/// kilobyte in a debug build), so the nesting stays far below the 2 MiB of a
/// spawned thread's default stack. Higher values save queue traffic on
/// moderately deep structures; lower values only cost speed, never safety.
const MAX_DEPTH: usize = 64;

/// The strong count of `header`'s object just reached zero: destroy it now or
/// defer it. Out of line, so that `Gc::drop`'s slow path reaches it by a
/// jump and saves no registers of its own (see `gc::released`).
///
/// # Safety
///
/// - `header` must be a tracked object whose strong count is zero and that
///   no one else is destroying.
#[inline(never)]
pub(crate) unsafe fn release<T: Trace + 'static>(header: NonNull<Header>) {
    let st = state();
    let depth = st.trash_depth.get();
    if depth >= MAX_DEPTH {
        // SAFETY: forwarded from the caller.
        unsafe { defer(st, header) };
        return;
    }
    st.trash_depth.set(depth + 1);
    let _depth = Depth(st);
    // SAFETY: forwarded from the caller; the depth is now at least 1.
    unsafe { crate::gc::drop_slow::<T>(header, Some(st)) };
}

/// Parks an object whose destruction would nest too deep, for the outermost
/// destruction to run. Out of line: the common death never comes here.
///
/// # Safety
///
/// - As for [`release`].
#[cold]
#[inline(never)]
unsafe fn defer(st: &State, header: NonNull<Header>) {
    // SAFETY: the object is alive and unreferenced; unlinking it hides it
    // from collections until its deferred destruction runs.
    unsafe { crate::gc::untrack(st, header) };
    st.trash.borrow_mut().push(header);
    st.outermost_work.set(true);
}

/// Restores the depth on the way out and, at the outermost level, empties the
/// queue.
struct Depth<'a>(&'a State);

impl Drop for Depth<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        let st = self.0;
        let depth = st.trash_depth.get() - 1;
        st.trash_depth.set(depth);
        if depth == 0 && st.outermost_work.get() {
            // Not inside `outermost`: `reap` may free the state, which must
            // then not be borrowed by any frame's argument.
            if outermost(st) {
                super::reap();
            }
        }
    }
}

/// The end of an outermost destruction that left work behind: empties the
/// queue, and says whether the heap may have to be freed.
#[inline(never)]
fn outermost(st: &State) -> bool {
    // While unwinding, a second panic from a deferred destructor would
    // abort; the queue is left for the next outermost destruction.
    if !st.trash.borrow().is_empty() && !std::thread::panicking() {
        drain(st);
    }
    st.outermost_work
        .set(st.orphaned.get() || !st.trash.borrow().is_empty());
    st.orphaned.get()
}

/// Runs every deferred destruction. Each runs at depth 1, so whatever it
/// cascades into is bounded again.
pub(crate) fn drain(st: &State) {
    loop {
        let Some(header) = st.trash.borrow_mut().pop() else {
            return;
        };
        st.trash_depth.set(st.trash_depth.get() + 1);
        let _depth = DrainDepth(st);
        // SAFETY: objects are queued only by `release`, with a zero strong
        // count, and popped once.
        unsafe { (Header::vtable(header).drop_slow)(header) };
    }
}

struct DrainDepth<'a>(&'a State);

impl Drop for DrainDepth<'_> {
    fn drop(&mut self) {
        self.0.trash_depth.set(self.0.trash_depth.get() - 1);
    }
}

/// Runs `f` as if inside a destruction, so that what it drops is bounded by
/// the trashcan, then empties the queue.
pub(crate) fn scope<R>(st: &State, f: impl FnOnce() -> R) -> R {
    st.trash_depth.set(st.trash_depth.get() + 1);
    let _depth = Depth(st);
    f()
}
