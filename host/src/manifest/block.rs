//! One `[[block]]` entry of the manifest, read section by section: what it is (name,
//! responsibility, component file), its limits, its supervision policy, its place in the start
//! order, its grants and its config.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{BlockSpec, Listen, Locator, ToStream};
use crate::defaults::{BUILTIN_RESPONSIBILITIES, Limits, MAX_MEMORY_BYTES, OutboxMode, Policy, STAMP_BYTES};
use crate::error::ManifestError;
use crate::restart::{GiveUp, Restart};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBlock {
    pub(super) name: Spanned<String>,
    responsibility: Option<Spanned<String>>,
    config: Option<toml::Table>,
    queue: Option<Spanned<u64>>,
    queue_bytes: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    call_timeout_ms: Option<Spanned<u64>>,
    max_bag_bytes: Option<Spanned<u64>>,
    max_bag_depth: Option<Spanned<u64>>,
    max_timers: Option<Spanned<u64>>,
    max_subscriptions: Option<Spanned<u64>>,
    send_buffer_bytes: Option<Spanned<u64>>,
    log_lines_per_sec: Option<Spanned<u64>>,
    stdout_bytes_per_sec: Option<Spanned<u64>>,
    stderr_bytes_per_sec: Option<Spanned<u64>>,
    outbox_bytes: Option<Spanned<u64>>,
    restart: Option<Restart>,
    on_give_up: Option<GiveUp>,
    max_restarts: Option<Spanned<u64>>,
    restart_window_ms: Option<Spanned<u64>>,
    backoff_ms: Option<Spanned<u64>>,
    backoff_max_ms: Option<Spanned<u64>>,
    max_attempts: Option<Spanned<u64>>,
    after: Option<Spanned<Vec<String>>>,
    required: Option<bool>,
    init_retries: Option<Spanned<u64>>,
    listen: Option<Spanned<Vec<String>>>,
    connect: Option<Spanned<Vec<String>>>,
    publish: Option<Spanned<Vec<String>>>,
    subscribe: Option<Spanned<Vec<String>>>,
    control: Option<Spanned<Vec<String>>>,
    durable: Option<bool>,
    shared: Option<bool>,
    publish_to_stream: Option<Spanned<toml::Value>>,
    outbox: Option<OutboxMode>,
    emit: Option<Spanned<Vec<String>>>,
    topics: Option<Spanned<Vec<toml::Value>>>,
    subscribe_topics: Option<Spanned<Vec<String>>>,
    workers: Option<Spanned<super::workers::RawWorkers>>,
    partition: Option<Spanned<String>>,
}

/// Reads and checks one `[[block]]` entry, found on `line`, whose component is in `dir`.
pub(super) fn block_spec(at: &Locator<'_>, dir: &Path, raw: RawBlock, line: usize) -> Result<BlockSpec, ManifestError> {
    let (name, responsibility, component) = identity(at, dir, &raw)?;
    let limits = limits(at, &raw)?;
    let policy = policy(at, &raw)?;
    let init_retries = match &raw.init_retries {
        Some(v) => at.in_range(v, "init_retries", 0, 1000)? as u32,
        None => 0,
    };
    let Grants { listen, connect, publish, subscribe } = grants(at, &raw)?;
    let publish_to_stream = to_stream(at, &raw, &publish)?;
    let topics = super::topics::topic_grants(
        at,
        super::topics::RawTopics { emit: &raw.emit, topics: &raw.topics, subscribe: &raw.subscribe_topics },
    )?;
    let workers = super::workers::workers(at, raw.workers.as_ref())?;
    let partition = super::workers::partition(at, raw.partition.as_ref(), &workers)?;
    Ok(BlockSpec {
        name,
        responsibility,
        component,
        config: config(raw.config),
        limits,
        policy,
        after: raw.after.map(Spanned::into_inner),
        required: raw.required.unwrap_or(true),
        init_retries,
        listen,
        connect,
        publish,
        subscribe,
        control: raw.control.map(Spanned::into_inner).unwrap_or_default(),
        durable: raw.durable.unwrap_or(false),
        shared: raw.shared.unwrap_or(false),
        publish_to_stream,
        outbox: raw.outbox.unwrap_or_default(),
        topics,
        workers,
        partition,
        line,
    })
}

/// The component's name, the responsibility, and the component file (which must exist).
fn identity(at: &Locator<'_>, dir: &Path, raw: &RawBlock) -> Result<(String, String, PathBuf), ManifestError> {
    let name = raw.name.get_ref();
    if !valid_name(name) {
        return Err(at.error(
            raw.name.span(),
            "name",
            format!(
                "`{name}` is not a component name: use letters, digits, `-`, `_` and `.`, \
                 not starting with `.`"
            ),
        ));
    }
    let responsibility = match &raw.responsibility {
        Some(r) => {
            let value = r.get_ref();
            if value.is_empty() || value.len() > 128 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(at.error(
                    r.span(),
                    "responsibility",
                    format!("`{value}` is not a responsibility: 1 to 128 characters, no spaces"),
                ));
            }
            value.clone()
        }
        None => name.clone(),
    };
    if BUILTIN_RESPONSIBILITIES.contains(&responsibility.as_str()) {
        let span = raw.responsibility.as_ref().map_or(raw.name.span(), Spanned::span);
        return Err(at.error(
            span,
            "responsibility",
            format!("`{responsibility}` is built into the host; choose another responsibility"),
        ));
    }
    let component = dir.join(format!("{name}.wasm"));
    if !component.is_file() {
        return Err(at.error(
            raw.name.span(),
            "name",
            format!("component file `{}` does not exist", component.display()),
        ));
    }
    Ok((name.clone(), responsibility, component))
}

/// The block's limits: the defaults, with what the entry sets.
fn limits(at: &Locator<'_>, raw: &RawBlock) -> Result<Limits, ManifestError> {
    let mut limits = Limits::default();
    if let Some(v) = &raw.queue {
        limits.queue = at.in_range(v, "queue", 1, 1 << 20)? as usize;
    }
    if let Some(v) = &raw.memory_mb {
        limits.memory_bytes = (at.in_range(v, "memory_mb", 1, (MAX_MEMORY_BYTES >> 20) as u64)? as usize) << 20;
    }
    if let Some(v) = &raw.call_timeout_ms {
        limits.call_timeout = Duration::from_millis(at.in_range(v, "call_timeout_ms", 1, 3_600_000)?);
    }
    if let Some(v) = &raw.max_bag_bytes {
        limits.max_bag_bytes = at.in_range(v, "max_bag_bytes", 2, 64 << 20)? as usize;
    }
    if let Some(v) = &raw.max_bag_depth {
        limits.max_bag_depth = at.in_range(v, "max_bag_depth", 1, 1024)? as usize;
    }
    if let Some(v) = &raw.max_timers {
        limits.max_timers = at.in_range(v, "max_timers", 0, 1 << 20)? as usize;
    }
    if let Some(v) = &raw.max_subscriptions {
        limits.max_subscriptions = at.in_range(v, "max_subscriptions", 0, 1 << 16)? as usize;
    }
    if let Some(v) = &raw.send_buffer_bytes {
        limits.send_buffer_bytes = at.in_range(v, "send_buffer_bytes", 1024, 1 << 30)? as usize;
    }
    if let Some(v) = &raw.log_lines_per_sec {
        limits.log_lines_per_sec = at.in_range(v, "log_lines_per_sec", 1, 1_000_000)? as u32;
    }
    if let Some(v) = &raw.stdout_bytes_per_sec {
        limits.stdout_bytes_per_sec = at.in_range(v, "stdout_bytes_per_sec", 1024, 1 << 30)?;
    }
    if let Some(v) = &raw.stderr_bytes_per_sec {
        limits.stderr_bytes_per_sec = at.in_range(v, "stderr_bytes_per_sec", 1024, 1 << 30)?;
    }
    if let Some(v) = &raw.outbox_bytes {
        limits.outbox_bytes = at.in_range(v, "outbox_bytes", 1024, 4 << 30)? as usize;
    }
    if let Some(v) = &raw.queue_bytes {
        limits.queue_bytes = at.in_range(v, "queue_bytes", 1024, 4 << 30)? as usize;
    }
    if limits.queue_bytes < limits.max_bag_bytes + STAMP_BYTES {
        let span = raw.queue_bytes.as_ref().or(raw.max_bag_bytes.as_ref()).map_or(raw.name.span(), Spanned::span);
        let key = if raw.queue_bytes.is_some() { "queue_bytes" } else { "max_bag_bytes" };
        return Err(at.error(
            span,
            key,
            format!(
                "queue_bytes ({}) is smaller than max_bag_bytes ({}) plus the host's keys ({STAMP_BYTES}): \
                 the largest bag could never be queued",
                limits.queue_bytes, limits.max_bag_bytes
            ),
        ));
    }
    Ok(limits)
}

/// What happens when the block faults: the defaults, with what the entry sets.
fn policy(at: &Locator<'_>, raw: &RawBlock) -> Result<Policy, ManifestError> {
    let mut policy = Policy::default();
    if let Some(r) = raw.restart {
        policy.restart = r;
    }
    if let Some(g) = raw.on_give_up {
        policy.on_give_up = g;
    }
    if let Some(v) = &raw.max_restarts {
        policy.max_restarts = at.in_range(v, "max_restarts", 0, 1_000_000)? as u32;
    }
    if let Some(v) = &raw.restart_window_ms {
        policy.window = Duration::from_millis(at.in_range(v, "restart_window_ms", 1, 86_400_000)?);
    }
    if let Some(v) = &raw.backoff_ms {
        policy.backoff.base = Duration::from_millis(at.in_range(v, "backoff_ms", 0, 3_600_000)?);
    }
    if let Some(v) = &raw.backoff_max_ms {
        policy.backoff.max = Duration::from_millis(at.in_range(v, "backoff_max_ms", 0, 3_600_000)?);
    }
    if let Some(v) = &raw.max_attempts {
        policy.max_attempts = at.in_range(v, "max_attempts", 1, 1000)? as u32;
    }
    Ok(policy)
}

/// What the block may reach: sockets (`listen`, `connect`) and server subjects (`publish`,
/// `subscribe`).
struct Grants {
    listen: Vec<Listen>,
    connect: Vec<String>,
    publish: Vec<String>,
    subscribe: Vec<String>,
}

fn grants(at: &Locator<'_>, raw: &RawBlock) -> Result<Grants, ManifestError> {
    let mut listen = Vec::new();
    if let Some(grants) = &raw.listen {
        for text in grants.get_ref() {
            let grant = Listen::parse(text).map_err(|why| at.error(grants.span(), "listen", why))?;
            if listen.contains(&grant) {
                return Err(at.error(grants.span(), "listen", format!("`{text}` is granted twice")));
            }
            listen.push(grant);
        }
    }
    let mut connect = Vec::new();
    if let Some(grants) = &raw.connect {
        for text in grants.get_ref() {
            let port_ok =
                text.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(at.error(grants.span(), "connect", format!("`{text}` is not a HOST:PORT address")));
            }
            connect.push(text.clone());
        }
    }
    let publish = subjects(at, "publish", &raw.publish)?;
    let subscribe = subjects(at, "subscribe", &raw.subscribe)?;
    Ok(Grants { listen, connect, publish, subscribe })
}

/// `publish_to_stream`: `true`, `false`, or the subjects (within the `publish` grants) whose
/// publishes go to a stream.
fn to_stream(at: &Locator<'_>, raw: &RawBlock, publish: &[String]) -> Result<ToStream, ManifestError> {
    let Some(value) = &raw.publish_to_stream else { return Ok(ToStream::None) };
    let key = "publish_to_stream";
    let refuse = |why: String| at.error(value.span(), key, why);
    let list = match value.get_ref() {
        toml::Value::Boolean(false) => return Ok(ToStream::None),
        toml::Value::Boolean(true) => return Ok(ToStream::All),
        toml::Value::Array(list) => list,
        other => return Err(refuse(format!("expected true, false or a list of subjects, found {}", other.type_str()))),
    };
    let mut subjects = Vec::with_capacity(list.len());
    for item in list {
        let Some(subject) = item.as_str() else {
            return Err(refuse(format!("expected a list of subjects (strings), found `{item}` in it")));
        };
        if !super::subject::valid_subscribe(subject) {
            return Err(refuse(format!(
                "`{subject}` is not a subject (tokens separated by dots; * and > as wildcards)"
            )));
        }
        if !publish.iter().any(|grant| super::subject::covers(grant, subject)) {
            return Err(refuse(format!("`{subject}` is not within the block's `publish` grants")));
        }
        subjects.push(subject.to_owned());
    }
    Ok(ToStream::Subjects(subjects))
}

/// A list of subject grants under `key` (NATS wildcards allowed).
fn subjects(at: &Locator<'_>, key: &str, raw: &Option<Spanned<Vec<String>>>) -> Result<Vec<String>, ManifestError> {
    let Some(list) = raw else { return Ok(Vec::new()) };
    for subject in list.get_ref() {
        if !super::subject::valid_subscribe(subject) {
            return Err(at.error(
                list.span(),
                key,
                format!("`{subject}` is not a subject (tokens separated by dots; * and > as wildcards)"),
            ));
        }
    }
    Ok(list.get_ref().clone())
}

/// The `config` table as the JSON object `init` is handed.
fn config(table: Option<toml::Table>) -> serde_json::Map<String, serde_json::Value> {
    match table.map(|t| toml_to_json(toml::Value::Table(t))) {
        Some(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// TOML to JSON; datetimes become their RFC 3339 text.
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        toml::Value::String(s) => J::String(s),
        toml::Value::Integer(i) => J::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect()),
    }
}
