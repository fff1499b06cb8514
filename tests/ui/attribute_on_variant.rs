use gencc::Trace;

#[derive(Trace)]
enum Message {
    Quit,
    #[trace(skip)]
    Write(String),
}

fn main() {}
