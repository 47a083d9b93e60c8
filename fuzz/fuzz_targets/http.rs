//! The http block's request reading on any bytes. The first byte picks where the stream is cut;
//! the rest is what a client sends. Reading never panics, asks for the same answers cut in two as
//! whole, and every refusal is a 4xx that says why.
#![no_main]

use bagpipe_protocol_props::http_request::{Client, Event};
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 256;

#[derive(Debug, PartialEq)]
enum Got {
    Request { method: String, path: String, keep_alive: bool, body: Vec<u8> },
    Fail { status: u16, error: String },
}

/// The answers a connection that sends `chunks` asks for (`100 Continue` left out: it depends
/// on whether a body came with its head), and whether it is closed after them.
fn read<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Got>, bool) {
    let mut client = Client::default();
    let mut out = Vec::new();
    let mut closed = false;
    for chunk in chunks {
        closed |= client.push(chunk, MAX_BODY, &mut |event| match event {
            Event::Continue => {}
            Event::Request(head, body) => out.push(Got::Request {
                method: head.method.clone(),
                path: head.path.clone(),
                keep_alive: head.keep_alive,
                body: body.to_vec(),
            }),
            Event::Fail(response) => {
                let error = response.body.get("error").and_then(|e| e.as_str()).unwrap_or_default().to_owned();
                out.push(Got::Fail { status: response.status, error });
            }
        });
    }
    (out, closed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, bytes)) = data.split_first() else { return };
    let cut = usize::from(k) * bytes.len() / 255;
    let whole = read([bytes]);
    assert_eq!(read([&bytes[..cut], &bytes[cut..]]), whole, "cut at {cut}");
    for got in &whole.0 {
        if let Got::Fail { status, error } = got {
            assert!((400..500).contains(status), "a refusal is a 4xx, not {status}");
            assert!(!error.is_empty(), "a refusal says why");
        }
    }
});
