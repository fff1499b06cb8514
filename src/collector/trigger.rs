//! When automatic collections run: CPython 3.11's schedule.
//!
//! Every tracked allocation adds one to `count[0]` and every tracked
//! deallocation takes one away (never below zero), so `count[0]` is the net
//! growth of tracked objects since the last collection. When it passes
//! `threshold[0]` the oldest generation whose count passes its threshold is
//! collected; `count[1]` and `count[2]` count collections of the next younger
//! generation. With the defaults (700, 10, 10) that gives eleven young
//! collections per generation-1 collection and eleven of those per full one.
//!
//! A full collection is costly in proportion to the whole heap, so it also
//! waits for the long-lived rule (CPython issue #4074): the objects promoted
//! into generation 2 since the last full collection must be at least a quarter
//! of what generation 2 held after it. Building a large long-lived structure
//! thus costs amortised linear time instead of quadratic.

use super::{collect, State};

/// Called before each tracked allocation.
#[inline]
pub(crate) fn on_alloc(st: &State) {
    let c = st.counts[0].get() + 1;
    st.counts[0].set(c);
    let t = st.thresholds[0].get();
    // `t == 0` disables automatic collection, as in CPython.
    if c > t && t != 0 && st.enabled.get() && !st.collecting.get() {
        collect_scheduled(st);
    }
}

/// Called when a tracked object is destroyed.
#[inline]
pub(crate) fn on_dealloc(st: &State) {
    let c = st.counts[0].get();
    st.counts[0].set(c.saturating_sub(1));
}

/// Called when a collection destroys `n` tracked objects.
#[inline]
pub(crate) fn on_deallocs(st: &State, n: usize) {
    let c = st.counts[0].get();
    st.counts[0].set(c.saturating_sub(n));
}

#[cold]
fn collect_scheduled(st: &State) {
    for gen in (0..3).rev() {
        if st.counts[gen].get() <= st.thresholds[gen].get() {
            continue;
        }
        if gen == 2 && st.long_lived_pending.get() < st.long_lived_total.get() / 4 {
            continue;
        }
        collect::collect_generation(st, gen, true);
        return;
    }
}
