//! The `[host]` table of the manifest: host-wide settings; and the `[[stream]]` tables, the
//! JetStream streams the host makes sure exist.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Locator;
use crate::defaults::{LOG_PUBLISH_PER_BLOCK, LogPublishing, Settings, StreamSpec};
use crate::error::ManifestError;
use crate::manifest::subject;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    enqueue_timeout_ms: Option<Spanned<u64>>,
    drain_timeout_ms: Option<Spanned<u64>>,
    pub(super) dead_letters: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    cluster: Option<Spanned<String>>,
    durable_ack_wait_ms: Option<Spanned<u64>>,
    state_dir: Option<Spanned<String>>,
    bridge_topics: Option<Spanned<Vec<String>>>,
    log_subject: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    log_lines_per_sec: Option<Spanned<u64>>,
}

pub(super) fn settings(at: &Locator<'_>, raw: RawHost) -> Result<Settings, ManifestError> {
    let mut settings = Settings::default();
    if let Some(ms) = raw.enqueue_timeout_ms {
        settings.enqueue_timeout = Duration::from_millis(at.in_range(&ms, "enqueue_timeout_ms", 0, 60_000)?);
    }
    if let Some(ms) = raw.drain_timeout_ms {
        settings.drain_timeout = Duration::from_millis(at.in_range(&ms, "drain_timeout_ms", 0, 600_000)?);
    }
    if let Some(ms) = raw.durable_ack_wait_ms {
        settings.durable_ack_wait = Duration::from_millis(at.in_range(&ms, "durable_ack_wait_ms", 300, 3_600_000)?);
    }
    if let Some(url) = raw.server {
        let text = url.get_ref();
        if !(text.starts_with("nats://") || text.starts_with("tls://")) || text.len() < 8 {
            return Err(at.error(url.span(), "server", format!("`{text}` is not a nats://HOST:PORT address")));
        }
        settings.server = Some(text.clone());
    }
    if let Some(cluster) = raw.cluster {
        let text = cluster.get_ref();
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(at.error(
                cluster.span(),
                "cluster",
                format!("`{text}` is not a cluster name (letters, digits, - and _)"),
            ));
        }
        settings.cluster = Some(text.clone());
    }
    if let Some(list) = raw.bridge_topics {
        for pattern in list.get_ref() {
            if !subject::valid_subscribe(pattern) {
                return Err(at.error(
                    list.span(),
                    "bridge_topics",
                    format!("`{pattern}` is not a topic (tokens separated by dots; * and > as wildcards)"),
                ));
            }
        }
        settings.bridge_topics = list.into_inner();
    }
    settings.logs = log_publishing(at, raw.log_subject, raw.log_level, raw.log_lines_per_sec)?;
    if let Some(dir) = raw.state_dir {
        let text = dir.get_ref();
        if text.is_empty() {
            return Err(at.error(dir.span(), "state_dir", "the state directory must not be empty".to_owned()));
        }
        // Relative to the manifest's directory, like the component files.
        let base = at.file.parent().unwrap_or(std::path::Path::new("."));
        settings.state_dir = Some(base.join(text));
    }
    Ok(settings)
}

/// `log_subject`, `log_level` and `log_lines_per_sec`: the last two only with the first.
fn log_publishing(
    at: &Locator<'_>,
    subject: Option<Spanned<String>>,
    level: Option<Spanned<String>>,
    rate: Option<Spanned<u64>>,
) -> Result<Option<LogPublishing>, ManifestError> {
    let Some(subject) = subject else {
        if let Some(level) = &level {
            return Err(at.error(level.span(), "log_level", "log_level needs log_subject".to_owned()));
        }
        if let Some(rate) = &rate {
            return Err(at.error(rate.span(), "log_lines_per_sec", "log_lines_per_sec needs log_subject".to_owned()));
        }
        return Ok(None);
    };
    let text = subject.get_ref().replace("{hostname}", &hostname());
    if !subject::valid_publish(&text) {
        return Err(at.error(
            subject.span(),
            "log_subject",
            format!("`{text}` is not a subject to publish to (tokens separated by dots, no wildcards)"),
        ));
    }
    let level = match level {
        None => tracing::Level::INFO,
        Some(level) => level.get_ref().parse::<tracing::Level>().map_err(|_| {
            at.error(
                level.span(),
                "log_level",
                format!("`{}` is not a level: error, warn, info, debug or trace", level.get_ref()),
            )
        })?,
    };
    let lines_per_sec = match rate {
        None => LOG_PUBLISH_PER_BLOCK,
        Some(rate) => at.in_range(&rate, "log_lines_per_sec", 1, 100_000)? as u32,
    };
    Ok(Some(LogPublishing { subject: text, level, lines_per_sec }))
}

/// This machine's name, made a subject token (`.`, `*`, `>` and spaces become `_`).
fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let token: String =
        name.trim().chars().map(|c| if matches!(c, '.' | '*' | '>') || c.is_whitespace() { '_' } else { c }).collect();
    if token.is_empty() { "unknown".to_owned() } else { token }
}

/// One `[[stream]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    name: Spanned<String>,
    subjects: Spanned<Vec<String>>,
}

/// Checks the `[[stream]]` tables: a name of letters, digits, `-` and `_`, used once; at least
/// one subject, each one a block could subscribe to.
pub(super) fn streams(at: &Locator<'_>, raw: Vec<RawStream>) -> Result<Vec<StreamSpec>, ManifestError> {
    let mut streams: Vec<StreamSpec> = Vec::with_capacity(raw.len());
    for stream in raw {
        let name = stream.name.get_ref();
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(at.error(
                stream.name.span(),
                "name",
                format!("`{name}` is not a stream name (letters, digits, - and _, at most 64)"),
            ));
        }
        if streams.iter().any(|s| s.name == *name) {
            return Err(at.error(stream.name.span(), "name", format!("stream `{name}` is declared twice")));
        }
        let subjects = stream.subjects.get_ref();
        if subjects.is_empty() {
            return Err(at.error(stream.subjects.span(), "subjects", format!("stream `{name}` stores no subject")));
        }
        if let Some(bad) = subjects.iter().find(|s| !subject::valid_subscribe(s)) {
            return Err(at.error(stream.subjects.span(), "subjects", format!("`{bad}` is not a subject")));
        }
        streams.push(StreamSpec { name: name.clone(), subjects: subjects.clone() });
    }
    Ok(streams)
}
