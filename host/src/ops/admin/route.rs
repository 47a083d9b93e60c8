//! Which page a request asks for ([`route`], pure, so that any method and path can be tried on
//! it) and the answer to it ([`answer`]).

use std::convert::Infallible;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::events;
use super::metrics::{log_metrics, prometheus, server_metrics};
use super::{AdminView, Streaming};

/// What a response carries: a whole page, or a stream.
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// The live page: one file, no build step, nothing from elsewhere.
const LIVE_PAGE: &str = include_str!("../live.html");

/// A page the admin endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// `/`: the live page, for people.
    Live,
    /// `/blocks`: every block's stats, as JSON.
    Blocks,
    /// `/host`: the host (version, uptime, server, log publishing), as JSON.
    Host,
    /// `/events`: what happens, as server-sent events.
    Events,
    /// `/dead-letters`: the dead letters kept, as JSON.
    DeadLetters,
    /// `/metrics`: the stats in Prometheus' text format.
    Metrics,
    /// `/server`: the message server connection, as JSON.
    Server,
    /// `/health`: `ok`.
    Health,
}

/// The pages, by path.
pub const PAGES: [(&str, Page); 8] = [
    ("/", Page::Live),
    ("/blocks", Page::Blocks),
    ("/host", Page::Host),
    ("/events", Page::Events),
    ("/dead-letters", Page::DeadLetters),
    ("/metrics", Page::Metrics),
    ("/server", Page::Server),
    ("/health", Page::Health),
];

/// A request the endpoint does not serve: its status and why, one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {why}")]
pub struct Refused {
    /// A 4xx.
    pub status: StatusCode,
    /// What is wrong, one line ending in a line break.
    pub why: String,
}

/// The page `method` and `path` (without its query) ask for.
pub fn route(method: &str, path: &str) -> Result<Page, Refused> {
    if method != "GET" {
        return Err(Refused {
            status: StatusCode::METHOD_NOT_ALLOWED,
            why: format!("`{}` is not allowed here: only GET\n", method.escape_debug()),
        });
    }
    match PAGES.iter().find(|(p, _)| *p == path) {
        Some((_, page)) => Ok(*page),
        None => Err(Refused {
            status: StatusCode::NOT_FOUND,
            why: format!(
                "no page `{}`: try /, /blocks, /host, /events, /metrics, /dead-letters, /server or /health\n",
                path.escape_debug()
            ),
        }),
    }
}

/// The answer to `request`. An `/events` answer starts `streaming`.
pub(crate) fn answer<B>(
    view: &AdminView,
    request: &Request<B>,
    cancel: &CancellationToken,
    streaming: &std::sync::Arc<Streaming>,
) -> Response<Body> {
    let page = match route(request.method().as_str(), request.uri().path()) {
        Ok(page) => page,
        Err(Refused { status, why }) => {
            let mut response = whole(status, "text/plain; charset=utf-8", why.into());
            if status == StatusCode::METHOD_NOT_ALLOWED {
                response.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET"));
            }
            return response;
        }
    };
    let json = |value: Result<String, serde_json::Error>| match value {
        Ok(body) => whole(StatusCode::OK, "application/json", body.into()),
        Err(e) => whole(StatusCode::INTERNAL_SERVER_ERROR, "text/plain; charset=utf-8", format!("{e}\n").into()),
    };
    match page {
        Page::Live => {
            let mut response = whole(StatusCode::OK, "text/html; charset=utf-8", LIVE_PAGE.into());
            // Everything the page uses is in it: nothing may come from elsewhere.
            response.headers_mut().insert(
                hyper::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:",
                ),
            );
            response
        }
        Page::Blocks => json(serde_json::to_string_pretty(&view.blocks())),
        Page::Host => json(serde_json::to_string_pretty(&host(view))),
        Page::Events => {
            let after = last_event_id(request, view.feed.started_at_ms());
            match events::stream(view, after, cancel, streaming.clone()) {
                Some(body) => {
                    streaming.start();
                    let mut response = Response::new(body);
                    let headers = response.headers_mut();
                    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                    response
                }
                None => whole(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain; charset=utf-8",
                    "too many /events streams open: try again later\n".into(),
                ),
            }
        }
        Page::DeadLetters => json(serde_json::to_string_pretty(&serde_json::json!({
            "total": view.dead_letters.total(),
            "kept": view.dead_letters.list(),
        }))),
        Page::Metrics => {
            let mut text = prometheus(&view.blocks(), &view.dead_letters);
            if let Some(server) = &view.server {
                text.push_str(&server_metrics(&server.snapshot()));
            }
            if let Some((_, sink)) = &view.logs {
                text.push_str(&log_metrics(sink));
            }
            whole(StatusCode::OK, "text/plain; version=0.0.4", text.into())
        }
        Page::Server => json(serde_json::to_string_pretty(&view.server.as_ref().map(|s| s.snapshot()))),
        Page::Health => whole(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
    }
}

/// `/host`: what the host is, how long it has run, its server and its log publishing.
fn host(view: &AdminView) -> serde_json::Value {
    let now = crate::ops::feed::now_ms();
    let started = view.feed.started_at_ms();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at_ms": started,
        "uptime_ms": now.saturating_sub(started),
        "now_ms": now,
        "blocks": view.blocks().len(),
        "dead_letters": view.dead_letters.total(),
        "server": view.server.as_ref().map(|s| s.snapshot()),
        "logs": view.logs.as_ref().map(|(subject, sink)| serde_json::json!({
            "subject": subject,
            "published": sink.published(),
            "dropped": sink.dropped(),
        })),
    })
}

/// The last event a reader has: its `Last-Event-ID` header (a reconnecting `EventSource` sends
/// it; one of an earlier run of the host counts as none), else `?after=N`, else 0 (send every
/// event kept).
fn last_event_id<B>(request: &Request<B>, run: u64) -> u64 {
    let header = request.headers().get("last-event-id").and_then(|v| v.to_str().ok()).map(|v| events::after_id(v, run));
    let query =
        || request.uri().query()?.split('&').find_map(|pair| pair.strip_prefix("after=")).and_then(|n| n.parse().ok());
    header.or_else(query).unwrap_or(0)
}

fn whole(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Full::new(body).boxed_unsync());
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
