use gencc::Trace;

#[derive(Trace)]
struct Assigned {
    #[trace(skip = true)]
    value: u32,
}

#[derive(Trace)]
struct Called {
    #[trace(skip(always))]
    value: u32,
}

fn main() {}
