use gencc::Trace;

#[derive(Trace)]
struct Log {
    lines: Vec<String>,
    file: std::fs::File,
}

fn main() {}
