use gencc::Trace;

#[derive(Trace)]
#[trace(finalise)]
struct OnType {
    value: u32,
}

#[derive(Trace)]
struct OnField {
    #[trace(ignore)]
    value: u32,
}

fn main() {}
