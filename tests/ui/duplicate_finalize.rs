use gencc::Trace;

#[derive(Trace)]
#[trace(finalize)]
#[trace(finalize)]
struct Resource {
    value: u32,
}

fn main() {}
