// A `Weak` must not move to another thread: upgrading it there would create a
// `Gc` on the wrong heap.
use gencc::{Gc, Weak};

fn main() {
    let gc = Gc::new(1u32);
    let weak: Weak<u32> = Gc::downgrade(&gc);
    std::thread::spawn(move || drop(weak));
}
