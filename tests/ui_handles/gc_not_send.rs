// A `Gc` must not move to another thread: its counts are not atomic and its
// heap belongs to the thread that made it.
use gencc::Gc;

fn main() {
    let gc = Gc::new(1u32);
    std::thread::spawn(move || drop(gc));
}
