// A `&Gc` must not be shared with another thread either: cloning through it
// would race on the counts.
use gencc::Gc;

fn require_sync<T: Sync>(_: &T) {}

fn main() {
    let gc = Gc::new(1u32);
    require_sync(&gc);
}
