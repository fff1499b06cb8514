// Every mistake in one derive is reported, not only the first.
use gencc::Trace;

#[derive(Trace)]
#[trace(skip)]
enum Everything {
    A {
        #[trace(finalize)]
        a: u32,
    },
    B(#[trace(skip, skip)] u32, #[trace(unknown)] u32),
}

fn main() {}
