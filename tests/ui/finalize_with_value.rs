use gencc::Trace;

#[derive(Trace)]
#[trace(finalize = "close")]
struct Resource {
    value: u32,
}

fn main() {}
