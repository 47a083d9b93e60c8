//! Property tests of the admin endpoint's request path: whatever bytes a client sends, reading
//! them never panics and gives the same answer however they arrive; a whole request is answered
//! once, 200 for a page and otherwise a 4xx whose body says what is wrong (404 for an unknown
//! path, 405 for another method); a head over `ADMIN_MAX_REQUEST` is refused whatever follows.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::admin::{AdminView, Page, Request, handle, read_request};
use crate::defaults::ADMIN_MAX_REQUEST;
use crate::routing::deadletter::DeadLetters;
use crate::routing::router::Router;

const PAGES: [(&str, Page); 5] = [
    ("/blocks", Page::Blocks),
    ("/dead-letters", Page::DeadLetters),
    ("/metrics", Page::Metrics),
    ("/server", Page::Server),
    ("/health", Page::Health),
];

/// A view of a host with no blocks, no dead letters and no server.
fn view() -> AdminView {
    AdminView { router: Arc::new(Router::new()), dead_letters: Arc::new(DeadLetters::new(None)), server: None }
}

/// Bytes that may or may not be a request: garbage, or request lines and headers good and bad.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let line = (
        "GET|POST|HEAD|get|G\\x00T|",
        "/blocks|/metrics|/health|/dead-letters|/server|/[!-~]{0,16}|\\*|",
        "HTTP/1\\.[01]|HTTP/9|",
        prop::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,16}|[ -~]{0,10}", 0..4),
        prop::bool::ANY,
    )
        .prop_map(|(method, path, version, headers, end)| {
            let mut text = format!("{method} {path} {version}\r\n");
            for h in headers {
                text.push_str(&h);
                text.push_str("\r\n");
            }
            if end {
                text.push_str("\r\n");
            }
            text.into_bytes()
        });
    prop_oneof![line, prop::collection::vec(any::<u8>(), 0..300)]
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{e:#}"))
}

/// What the endpoint answers to a client that sends `bytes` and then stops sending.
fn answer(bytes: &[u8]) -> Result<Vec<u8>, TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(fail)?;
    runtime.block_on(async {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(bytes).await.map_err(fail)?;
        client.shutdown().await.map_err(fail)?;
        handle(server, &view()).await.map_err(fail)?;
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.map_err(fail)?;
        Ok(out)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_algorithm: RngAlgorithm::XorShift, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_are_read_without_panicking_and_refusals_say_why(
        bytes in request(),
        at in any::<prop::sample::Index>(),
    ) {
        let got = read_request(&bytes);
        // Read as the endpoint does, as the bytes arrive: an earlier answer is the final one.
        match read_request(&bytes[..at.index(bytes.len() + 1)]) {
            Request::Partial => {}
            early => prop_assert_eq!(&early, &got),
        }
        match &got {
            Request::Partial => prop_assert!(bytes.len() < ADMIN_MAX_REQUEST),
            Request::Get(_) => prop_assert!(String::from_utf8_lossy(&bytes).contains("GET ")),
            Request::Refused { status, why } => {
                prop_assert!(status.starts_with('4'), "a refusal is a 4xx, not {}", status);
                prop_assert!(why.len() > 1 && why.ends_with('\n') && why.lines().count() == 1, "{:?}", why);
            }
        }
    }

    #[test]
    fn unknown_paths_are_404_and_other_methods_405(
        method in "GET|[A-Z]{1,8}",
        path in "/blocks|/metrics|/health|/dead-letters|/server|/[a-z/._-]{0,16}",
        query in "(\\?[a-z=&]{0,8})?",
    ) {
        let got = read_request(format!("{method} {path}{query} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes());
        let page = PAGES.iter().find(|(p, _)| *p == path).map(|(_, page)| *page);
        match (method.as_str(), page) {
            ("GET", Some(page)) => prop_assert_eq!(got, Request::Get(page)),
            ("GET", None) => {
                let Request::Refused { status, why } = got else { return Err(TestCaseError::fail("not refused")) };
                prop_assert_eq!(status, "404 Not Found");
                prop_assert!(why.contains(&format!("`{path}`")), "{} should name the path", why);
            }
            (method, _) => {
                let Request::Refused { status, why } = got else { return Err(TestCaseError::fail("not refused")) };
                prop_assert_eq!(status, "405 Method Not Allowed");
                prop_assert!(why.contains(&format!("`{method}`")), "{} should name the method", why);
            }
        }
    }

    #[test]
    fn the_endpoint_answers_a_whole_request_once(bytes in request()) {
        let out = answer(&bytes)?;
        let want = read_request(&bytes);
        if want == Request::Partial {
            prop_assert!(out.is_empty(), "no answer before a whole request");
            return Ok(());
        }
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(at)) = response.parse(&out) else {
            return Err(TestCaseError::fail(format!("not one response: {:?}", String::from_utf8_lossy(&out))));
        };
        let code = response.code.unwrap_or_default();
        match want {
            Request::Get(_) => prop_assert_eq!(code, 200),
            Request::Refused { status, why } => {
                prop_assert_eq!(code.to_string(), &status[..3]);
                prop_assert_eq!(&out[at..], why.as_bytes());
            }
            Request::Partial => {}
        }
    }
}

proptest! {
    // Each case reads a head of over 8 KiB: fewer cases.
    #![proptest_config(ProptestConfig { cases: 32, rng_algorithm: RngAlgorithm::XorShift, ..ProptestConfig::default() })]

    #[test]
    fn a_head_over_the_limit_is_431_whatever_follows(after in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = format!("GET /blocks HTTP/1.1\r\nx-big: {}", "a".repeat(ADMIN_MAX_REQUEST)).into_bytes();
        bytes.extend(after);
        let Request::Refused { status, why } = read_request(&bytes) else {
            return Err(TestCaseError::fail("not refused"));
        };
        prop_assert_eq!(status, "431 Request Header Fields Too Large");
        prop_assert!(why.contains(&ADMIN_MAX_REQUEST.to_string()), "{} should name the limit", why);
    }
}
