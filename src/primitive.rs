//! The one place where cells and thread-locals come from.
//!
//! Every other module imports `Cell`, `RefCell` and `thread_local!` from
//! here, never from `std` directly. The single-threaded core only ever needs
//! std's versions; the thread-safe variant planned next will add its atomics
//! here too, switched to `loom`'s under `cfg(loom)`, so that the same code runs
//! under the model checker without `cfg` attributes spread across the crate.

pub(crate) mod cell {
    pub(crate) use core::cell::{Cell, RefCell};
}

pub(crate) use std::thread_local;
