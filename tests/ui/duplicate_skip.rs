use gencc::Trace;

#[derive(Trace)]
struct SameList {
    #[trace(skip, skip)]
    value: u32,
}

#[derive(Trace)]
struct TwoAttributes {
    #[trace(skip)]
    #[trace(skip)]
    value: u32,
}

fn main() {}
