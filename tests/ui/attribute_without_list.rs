use gencc::Trace;

#[derive(Trace)]
struct Bare {
    #[trace]
    value: u32,
}

fn main() {}
