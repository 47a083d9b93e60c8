//! Property tests of the admin endpoint's request path: whatever bytes a client sends, the
//! endpoint never panics and answers at most once; a whole request is answered 200 for a page
//! and otherwise a 4xx whose body says what is wrong (404 for an unknown path, 405 for another
//! method); a head over `ADMIN_MAX_REQUEST` is refused with 431 whatever follows.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::RngAlgorithm;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::route::{PAGES, Refused, route};
use super::{AdminView, serve_connection};
use crate::defaults::ADMIN_MAX_REQUEST;
use crate::ops::feed::Feed;
use crate::routing::deadletter::DeadLetters;
use crate::routing::router::Router;

/// A view of a host with no blocks, no dead letters and no server.
fn view() -> AdminView {
    AdminView::new(Arc::new(Router::new()), Arc::new(DeadLetters::new(None)), None, Feed::new())
}

/// Bytes that may or may not be a request: garbage, or request lines and headers good and bad.
/// (`/events` is left out: its answer does not end.)
fn request() -> impl Strategy<Value = Vec<u8>> {
    let line = (
        "GET|POST|HEAD|get|G\\x00T|",
        "/|/blocks|/host|/metrics|/health|/dead-letters|/server|/[!-~]{0,16}|\\*|",
        "HTTP/1\\.[01]|HTTP/9|",
        prop::collection::vec("[A-Za-z-]{1,10}: [ -~]{0,16}|[ -~]{0,10}", 0..4),
        prop::bool::ANY,
    )
        .prop_filter("not /events", |(_, path, ..)| !path.starts_with("/events"))
        .prop_map(|(method, path, version, headers, end)| {
            let mut text = format!("{method} {path} {version}\r\nhost: x\r\n");
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
        serve_connection(server, view(), CancellationToken::new()).await;
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.map_err(fail)?;
        Ok(out)
    })
}

/// The responses in `out`: their codes and bodies.
fn responses(out: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, TestCaseError> {
    let mut found = Vec::new();
    let mut rest = out;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut response = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(at)) = response.parse(rest) else {
            return Err(TestCaseError::fail(format!("not a response: {:?}", String::from_utf8_lossy(rest))));
        };
        let length = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
            .unwrap_or(rest.len() - at);
        let end = (at + length).min(rest.len());
        found.push((response.code.unwrap_or_default(), rest[at..end].to_vec()));
        rest = &rest[end..];
    }
    Ok(found)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_algorithm: RngAlgorithm::XorShift, ..ProptestConfig::default() })]

    #[test]
    fn unknown_paths_are_404_and_other_methods_405(
        method in "GET|[A-Z]{1,8}",
        path in "/|/blocks|/host|/events|/metrics|/health|/dead-letters|/server|/[a-z/._-]{0,16}",
    ) {
        let got = route(&method, &path);
        let page = PAGES.iter().find(|(p, _)| *p == path).map(|(_, page)| *page);
        match (method.as_str(), page) {
            ("GET", Some(page)) => prop_assert_eq!(got, Ok(page)),
            ("GET", None) => {
                let Err(Refused { status, why }) = got else { return Err(TestCaseError::fail("not refused")) };
                prop_assert_eq!(status.as_u16(), 404);
                prop_assert!(why.contains(&format!("`{path}`")), "{} should name the path", why);
            }
            (method, _) => {
                let Err(Refused { status, why }) = got else { return Err(TestCaseError::fail("not refused")) };
                prop_assert_eq!(status.as_u16(), 405);
                prop_assert!(why.contains(&format!("`{method}`")), "{} should name the method", why);
            }
        }
    }

    #[test]
    fn the_endpoint_answers_any_bytes_at_most_once(bytes in request()) {
        let out = answer(&bytes)?;
        let found = responses(&out)?;
        prop_assert!(found.len() <= 1, "one answer at most, got {}", found.len());
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&bytes) {
            Ok(httparse::Status::Complete(_)) => {
                // A whole request: answered, as the router says.
                let [(code, body)] = found.as_slice() else {
                    return Err(TestCaseError::fail(format!("no answer to {:?}", String::from_utf8_lossy(&bytes))));
                };
                let Ok(uri) = request.path.unwrap_or_default().parse::<hyper::Uri>() else {
                    // A target that is not a URI: hyper refuses it before the router sees it.
                    prop_assert_eq!(*code, 400);
                    return Ok(());
                };
                // The router sees the URI's path: no query, no fragment (`/#` is `/`).
                match route(request.method.unwrap_or_default(), uri.path()) {
                    Ok(_) => prop_assert_eq!(*code, 200),
                    Err(Refused { status, why }) => {
                        prop_assert_eq!(*code, status.as_u16());
                        // An answer to HEAD has no body (hyper sees to it).
                        let want = if request.method == Some("HEAD") { &[][..] } else { why.as_bytes() };
                        prop_assert_eq!(body.as_slice(), want);
                    }
                }
            }
            // Not a request: nothing, or a 4xx.
            _ => {
                if let [(code, _)] = found.as_slice() {
                    prop_assert!((400..500).contains(code), "{} for {:?}", code, String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
}

proptest! {
    // Each case sends a head of over 8 KiB: fewer cases.
    #![proptest_config(ProptestConfig { cases: 32, rng_algorithm: RngAlgorithm::XorShift, ..ProptestConfig::default() })]

    #[test]
    fn a_head_over_the_limit_is_431_whatever_follows(after in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = format!("GET /blocks HTTP/1.1\r\nx-big: {}", "a".repeat(ADMIN_MAX_REQUEST)).into_bytes();
        bytes.extend(after);
        let found = responses(&answer(&bytes)?)?;
        let [(code, _)] = found.as_slice() else { return Err(TestCaseError::fail("not one answer")) };
        prop_assert_eq!(*code, 431);
    }
}
