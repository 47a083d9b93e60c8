//! Property tests of the http block's request reading: whatever bytes a client sends, in
//! whatever pieces, reading never panics and asks for the same answers as the whole stream
//! would; requests built by the rules come out as built, pipelined; a head or body over its limit
//! and whatever cannot be read are refused with a 4xx that says why.

use proptest::prelude::*;

use crate::http_request::{Client, Event, MAX_HEAD, MAX_HEADERS, Response};

const MAX_BODY: usize = 64;

/// What a connection's bytes asked for, owned, for comparing.
#[derive(Debug, Clone, PartialEq)]
enum Got {
    Continue,
    Request { method: String, path: String, keep_alive: bool, has_length: bool, body: Vec<u8> },
    Fail { status: u16, error: String },
}

fn fail(response: &Response) -> Got {
    let error = response.body.get("error").and_then(|e| e.as_str()).unwrap_or_default().to_owned();
    Got::Fail { status: response.status, error }
}

/// What a connection that sends `chunks` asks for, and whether it is closed after them.
fn read<'a>(max_body: usize, chunks: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Got>, bool) {
    let mut client = Client::default();
    let mut out = Vec::new();
    let mut closed = false;
    for chunk in chunks {
        closed |= client.push(chunk, max_body, &mut |event| {
            out.push(match event {
                Event::Continue => Got::Continue,
                Event::Request(head, body) => Got::Request {
                    method: head.method.clone(),
                    path: head.path.clone(),
                    keep_alive: head.keep_alive,
                    has_length: head.has_length,
                    body: body.to_vec(),
                },
                Event::Fail(response) => fail(&response),
            })
        });
    }
    (out, closed)
}

/// Without the `100 Continue`s, which depend on whether a body came with its head.
fn answers((got, closed): (Vec<Got>, bool)) -> (Vec<Got>, bool) {
    (got.into_iter().filter(|g| *g != Got::Continue).collect(), closed)
}

/// `bytes` cut at the given points.
fn cut<'a>(bytes: &'a [u8], at: &[prop::sample::Index]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = at.iter().map(|i| i.index(bytes.len() + 1)).collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut from = 0;
    for p in points.into_iter().chain([bytes.len()]) {
        chunks.push(&bytes[from..p]);
        from = p;
    }
    chunks
}

/// A header line, good or bad, with the names the block reads often among them.
fn header() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..=2 * MAX_BODY).prop_map(|n| format!("Content-Length: {n}")),
        "content-length: [-+ 0-9a-f]{0,4}",
        Just("Transfer-Encoding: chunked".to_owned()),
        "Connection: (close|keep-alive|Keep-Alive, close|upgrade)",
        Just("Expect: 100-continue".to_owned()),
        "[A-Za-z-]{1,10}: [ -~]{0,20}",
        "[ -~]{0,20}",
    ]
}

/// A request that may or may not be well formed, with a body of any length.
fn request() -> impl Strategy<Value = Vec<u8>> {
    (
        "GET|POST|PUT|DELETE|G T|",
        "/[!-~]{0,16}|\\*|",
        "HTTP/1\\.[01]|HTTP/2|HTTP/1\\.x",
        prop::collection::vec(header(), 0..5),
        prop::collection::vec(any::<u8>(), 0..2 * MAX_BODY),
    )
        .prop_map(|(method, path, version, headers, body)| {
            let mut bytes = format!("{method} {path} {version}\r\n").into_bytes();
            for h in headers {
                bytes.extend(format!("{h}\r\n").as_bytes());
            }
            bytes.extend(b"\r\n");
            bytes.extend(body);
            bytes
        })
}

/// Several requests back to back, maybe with garbage.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(request(), 1..4).prop_map(|r| r.concat()),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// A well-formed HTTP/1.1 request with a body, kept alive.
fn valid() -> impl Strategy<Value = (String, String, Vec<u8>, Vec<u8>)> {
    ("GET|POST|PUT", "/[a-z/]{0,12}(\\?[a-z=&]{0,8})?", prop::collection::vec(any::<u8>(), 0..=MAX_BODY), any::<bool>())
        .prop_map(|(method, path, body, expect)| {
            let mut bytes = format!("{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n", body.len());
            if expect {
                bytes.push_str("expect: 100-continue\r\n");
            }
            bytes.push_str("\r\n");
            let mut bytes = bytes.into_bytes();
            bytes.extend(&body);
            (method, path, body, bytes)
        })
}

proptest! {
    #![proptest_config(crate::bounded(256))]

    #[test]
    fn any_bytes_in_any_pieces_ask_what_the_whole_stream_asks(
        bytes in stream(),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let whole = read(MAX_BODY, [bytes.as_slice()]);
        let pieces = read(MAX_BODY, cut(&bytes, &at));
        prop_assert_eq!(answers(pieces), answers(whole.clone()));
        for got in &whole.0 {
            if let Got::Fail { status, error } = got {
                prop_assert!((400..500).contains(status), "a refusal is a 4xx, not {}", status);
                prop_assert!(!error.is_empty(), "a refusal says why");
            }
        }
        let fails = whole.0.iter().filter(|g| matches!(g, Got::Fail { .. })).count();
        prop_assert!(fails <= 1, "the connection closes after the first refusal");
        if fails == 1 {
            let last_is_fail = matches!(whole.0.last(), Some(Got::Fail { .. }));
            prop_assert!(whole.1 && last_is_fail, "a refusal is the last answer, and closes");
        }
    }

    #[test]
    fn requests_cut_at_any_byte_ask_what_the_whole_stream_asks(requests in prop::collection::vec(request(), 1..3)) {
        let bytes = requests.concat();
        let whole = answers(read(MAX_BODY, [bytes.as_slice()]));
        for i in 0..=bytes.len() {
            let (a, b) = bytes.split_at(i);
            prop_assert_eq!(&answers(read(MAX_BODY, [a, b])), &whole, "cut at {}", i);
        }
    }

    #[test]
    fn pipelined_requests_read_as_built(
        requests in prop::collection::vec(valid(), 1..5),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let bytes: Vec<u8> = requests.iter().flat_map(|r| r.3.clone()).collect();
        let want: Vec<Got> = requests
            .iter()
            .map(|(method, path, body, _)| Got::Request {
                method: method.clone(),
                path: path.clone(),
                keep_alive: true,
                has_length: true,
                body: body.clone(),
            })
            .collect();
        prop_assert_eq!(answers(read(MAX_BODY, cut(&bytes, &at))), (want, false));
    }

    #[test]
    fn a_body_over_the_limit_is_refused_before_it_is_read(len in MAX_BODY + 1..1 << 40, path in "/[a-z]{0,8}") {
        let bytes = format!("POST {path} HTTP/1.1\r\ncontent-length: {len}\r\n\r\n");
        let got = read(MAX_BODY, [bytes.as_bytes()]);
        let error = format!("body larger than {MAX_BODY} bytes");
        prop_assert_eq!(got, (vec![Got::Fail { status: 413, error }], true));
    }

    #[test]
    fn too_many_headers_are_refused(extra in 1usize..8, cut_at in any::<prop::sample::Index>()) {
        let mut bytes = "GET /health HTTP/1.1\r\n".to_owned();
        for i in 0..MAX_HEADERS + extra {
            bytes.push_str(&format!("x-{i}: y\r\n"));
        }
        bytes.push_str("\r\n");
        let bytes = bytes.into_bytes();
        let (a, b) = bytes.split_at(cut_at.index(bytes.len() + 1));
        let want = (vec![Got::Fail { status: 431, error: "too many headers".into() }], true);
        prop_assert_eq!(read(MAX_BODY, [a, b]), want);
    }
}

proptest! {
    // Each case reads a head of over 16 KiB several times: fewer cases.
    #![proptest_config(crate::bounded(32))]

    #[test]
    fn a_head_over_the_limit_is_refused_however_it_arrives(
        over in 1usize..64,
        after in prop::collection::vec(any::<u8>(), 0..64),
        at in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        // A head with no end within MAX_HEAD bytes, whatever follows it.
        let mut bytes = format!("GET / HTTP/1.1\r\nx-big: {}", "a".repeat(MAX_HEAD + over)).into_bytes();
        bytes.extend(after);
        let error = format!("request head larger than {MAX_HEAD} bytes");
        let want = (vec![Got::Fail { status: 431, error }], true);
        prop_assert_eq!(read(MAX_BODY, cut(&bytes, &at)), want);
    }
}

/// Found by `a_head_over_the_limit_is_refused_however_it_arrives`: a head over the limit that
/// arrived in one piece with a byte `httparse` refuses after its first 16 KiB was answered 400
/// (malformed), and 431 when the same bytes came in two pieces.
#[test]
fn a_head_over_the_limit_is_431_whatever_follows_it() {
    let mut bytes = format!("GET / HTTP/1.1\r\nx-big: {}", "a".repeat(MAX_HEAD)).into_bytes();
    bytes.push(0);
    let error = format!("request head larger than {MAX_HEAD} bytes");
    assert_eq!(read(MAX_BODY, [bytes.as_slice()]), (vec![Got::Fail { status: 431, error }], true));
}
