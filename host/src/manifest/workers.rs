//! A block's worker pool, read from its manifest entry: `workers = { min, max, idle_ms,
//! scale_ms }` and `partition = "field"`.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Locator;
use crate::defaults::{MAX_WORKERS, Workers};
use crate::error::ManifestError;

/// The `workers` table, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    min: Option<Spanned<u64>>,
    max: Option<Spanned<u64>>,
    idle_ms: Option<Spanned<u64>>,
    scale_ms: Option<Spanned<u64>>,
}

/// The pool: the defaults (one worker), with what the entry sets. `min` alone runs that many;
/// `max` alone starts one and may grow to it.
pub(super) fn workers(at: &Locator<'_>, raw: Option<&Spanned<RawWorkers>>) -> Result<Workers, ManifestError> {
    let mut workers = Workers::default();
    let Some(raw) = raw else { return Ok(workers) };
    let raw = raw.get_ref();
    let max = MAX_WORKERS as u64;
    if let Some(v) = &raw.min {
        workers.min = at.in_range(v, "workers.min", 1, max)? as usize;
        workers.max = workers.min;
    }
    if let Some(v) = &raw.max {
        workers.max = at.in_range(v, "workers.max", 1, max)? as usize;
        if workers.max < workers.min {
            return Err(at.error(
                v.span(),
                "workers.max",
                format!("{} is smaller than workers.min ({})", workers.max, workers.min),
            ));
        }
    }
    if let Some(v) = &raw.idle_ms {
        workers.idle = Duration::from_millis(at.in_range(v, "workers.idle_ms", 1, 86_400_000)?);
    }
    if let Some(v) = &raw.scale_ms {
        workers.scale_after = Duration::from_millis(at.in_range(v, "workers.scale_ms", 0, 3_600_000)?);
    }
    Ok(workers)
}

/// `partition`: the top-level bag field whose value pins a bag to one worker (host keys such as
/// `__from` included); only for a block with more than one worker.
pub(super) fn partition(
    at: &Locator<'_>,
    raw: Option<&Spanned<String>>,
    workers: &Workers,
) -> Result<Option<String>, ManifestError> {
    let Some(field) = raw else { return Ok(None) };
    let name = field.get_ref();
    if name.is_empty() || name.len() > 128 {
        return Err(at.error(field.span(), "partition", "a partition field is 1 to 128 characters".to_owned()));
    }
    if !workers.pooled() {
        return Err(at.error(
            field.span(),
            "partition",
            "`partition` keeps order per key across workers: it needs `workers` with a max above 1".to_owned(),
        ));
    }
    Ok(Some(name.clone()))
}
