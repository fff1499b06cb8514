use gencc::Trace;

#[derive(Trace)]
struct Resource {
    #[trace(finalize)]
    value: u32,
}

fn main() {}
