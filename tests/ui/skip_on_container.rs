use gencc::Trace;

#[derive(Trace)]
#[trace(skip)]
struct Opaque {
    value: u32,
}

fn main() {}
