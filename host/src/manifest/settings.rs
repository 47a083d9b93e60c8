//! The `[host]` table of the manifest: host-wide settings.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Locator;
use crate::defaults::Settings;
use crate::error::ManifestError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    enqueue_timeout_ms: Option<Spanned<u64>>,
    drain_timeout_ms: Option<Spanned<u64>>,
    pub(super) dead_letters: Option<Spanned<String>>,
    server: Option<Spanned<String>>,
    cluster: Option<Spanned<String>>,
    durable_ack_wait_ms: Option<Spanned<u64>>,
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
    Ok(settings)
}
