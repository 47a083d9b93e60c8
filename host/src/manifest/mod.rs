//! The manifest: `bagpipe.toml` in a component directory, read into a checked [`Manifest`].
//!
//! ```toml
//! [host]                       # optional
//! enqueue_timeout_ms = 500
//! drain_timeout_ms = 5000
//!
//! [[block]]
//! name = "transform"           # the component: transform.wasm in this directory
//! responsibility = "upper"     # optional, defaults to the name; must be unique
//! queue = 1024                 # optional limits, see `defaults::Limits`
//! after = ["source"]           # optional; without it, after the block before it
//! restart = "one"              # optional supervision, see `defaults::Policy`
//! [block.config]               # any table, handed to `init` as JSON
//! field = "text"
//! ```
//!
//! Invariant: a [`Manifest`] that exists is valid: every responsibility is unique and not a
//! built-in one, every component file existed when it was read, every limit is in range, the
//! dependencies name existing blocks and have no cycle. Every error names the file, and where it
//! can the line and the key.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::defaults::{BUILTIN_RESPONSIBILITIES, Limits, MANIFEST_FILE, Policy, Settings};
use crate::error::ManifestError;
use crate::supervision::deps::{DepError, Graph};
use crate::supervision::restart::{GiveUp, Restart};
use settings::{RawHost, settings};

mod listen;
mod settings;

pub use listen::{Listen, Protocol};

/// A checked manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The component directory (the manifest's directory).
    pub dir: PathBuf,
    /// Host-wide settings.
    pub settings: Settings,
    /// The blocks, in manifest order.
    pub blocks: Vec<BlockSpec>,
    /// Their dependencies, by index into `blocks`.
    pub graph: Graph,
}

/// One block of the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockSpec {
    /// The component's name (its file without `.wasm`).
    pub name: String,
    /// The instance's unique name, the address of its bags.
    pub responsibility: String,
    /// The component file.
    pub component: PathBuf,
    /// The `config` table as JSON, handed to `init`.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// The block's limits.
    pub limits: Limits,
    /// What happens when it faults.
    pub policy: Policy,
    /// The responsibilities it starts after; `None`: after the block before it in the manifest.
    pub after: Option<Vec<String>>,
    /// Whether the host may run without it when its `init` keeps failing.
    pub required: bool,
    /// How often a failed `init` is tried again (with exponential backoff) before giving up.
    pub init_retries: u32,
    /// Sockets the host listens on for the block.
    pub listen: Vec<Listen>,
    /// Addresses (`host:port`) the block may connect to.
    pub connect: Vec<String>,
    /// Server subjects the block may publish to (NATS wildcards).
    pub publish: Vec<String>,
    /// Server subjects the block may subscribe to (NATS wildcards).
    pub subscribe: Vec<String>,
    /// Bags to it go through a stream on the server and survive a host crash.
    pub durable: bool,
    /// Bags to it go through the cluster even from this host, so every host running it shares
    /// the work.
    pub shared: bool,
    /// The line of the block's `[[block]]` entry, for messages.
    pub line: usize,
}

impl BlockSpec {
    /// This entry with the routing (`durable`, `shared`) of `running`, and whether it differed:
    /// how bags reach a block is set up when it is added and changes only when the host restarts.
    /// (Its grants change live: see the supervisor's `reconfigure`.)
    pub fn keeping_routing_of(&self, running: &BlockSpec) -> (BlockSpec, bool) {
        let changed = (self.durable, self.shared) != (running.durable, running.shared);
        let mut kept = self.clone();
        (kept.durable, kept.shared) = (running.durable, running.shared);
        (kept, changed)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    host: RawHost,
    #[serde(default)]
    block: Vec<Spanned<RawBlock>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBlock {
    name: Spanned<String>,
    responsibility: Option<Spanned<String>>,
    config: Option<toml::Table>,
    queue: Option<Spanned<u64>>,
    memory_mb: Option<Spanned<u64>>,
    call_timeout_ms: Option<Spanned<u64>>,
    max_bag_bytes: Option<Spanned<u64>>,
    max_bag_depth: Option<Spanned<u64>>,
    max_timers: Option<Spanned<u64>>,
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
    durable: Option<bool>,
    shared: Option<bool>,
}

impl Manifest {
    /// Reads `path`: a component directory holding `bagpipe.toml`, or a manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let file = if path.is_dir() { path.join(MANIFEST_FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ManifestError::new(&file, format!("cannot read the manifest: {e}")))?;
        Self::parse(&file, &text)
    }

    /// Checks manifest text as if read from `file`; components are looked for beside `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ManifestError> {
        let at = Locator { file, text };
        let raw: RawManifest = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dead_letters = raw.host.dead_letters.clone();
        let settings = settings(&at, raw.host)?;
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut blocks = Vec::with_capacity(raw.block.len());
        for entry in raw.block {
            let line = at.line(entry.span().start);
            let block = block_spec(&at, &dir, entry.into_inner(), line)?;
            if let Some(first) = seen.insert(block.responsibility.clone(), line) {
                return Err(at.error_at_line(
                    line,
                    Some("responsibility"),
                    format!(
                        "responsibility `{}` is already used by the block on line {first}; \
                         give each instance its own `responsibility`",
                        block.responsibility
                    ),
                ));
            }
            blocks.push(block);
        }
        if blocks.is_empty() {
            return Err(ManifestError::new(file, "no blocks: add at least one [[block]]".into()));
        }
        let mut settings = settings;
        if let Some(to) = dead_letters {
            if !blocks.iter().any(|b| b.responsibility == *to.get_ref()) {
                return Err(at.error(
                    to.span(),
                    "dead_letters",
                    format!("no block has responsibility `{}`", to.get_ref()),
                ));
            }
            settings.dead_letters = Some(to.into_inner());
        }
        if let Some(block) = blocks.iter().find(|b| (b.durable || b.shared) && settings.cluster.is_none()) {
            let key = if block.durable { "durable" } else { "shared" };
            return Err(at.error_at_line(
                block.line,
                Some(key),
                format!("`{key}` needs a cluster: set [host] server and cluster"),
            ));
        }
        let deps: Vec<(&str, Option<&[String]>)> =
            blocks.iter().map(|b| (b.responsibility.as_str(), b.after.as_deref())).collect();
        let graph = Graph::new(&deps).map_err(|e| match e {
            DepError::Missing { block, missing } => at.error_at_line(
                blocks[block].line,
                Some("after"),
                format!(
                    "block `{}` is after `{missing}`, but no block has that responsibility",
                    blocks[block].responsibility
                ),
            ),
            DepError::Cycle(cycle) => {
                let first = blocks.iter().find(|b| b.responsibility == cycle[0]).map_or(1, |b| b.line);
                at.error_at_line(first, Some("after"), format!("dependency cycle: {}", cycle.join(" -> ")))
            }
        })?;
        Ok(Manifest { path: file.to_path_buf(), dir, settings, blocks, graph })
    }

    /// The component names a manifest lists, without checking anything else (the components
    /// need not exist yet: this is what to build).
    pub fn component_names(path: &Path) -> Result<Vec<String>, ManifestError> {
        let file = if path.is_dir() { path.join(MANIFEST_FILE) } else { path.to_path_buf() };
        let text = std::fs::read_to_string(&file)
            .map_err(|e| ManifestError::new(&file, format!("cannot read the manifest: {e}")))?;
        let raw: RawManifest =
            toml::from_str(&text).map_err(|e| Locator { file: &file, text: &text }.toml_error(&e))?;
        let mut names: Vec<String> = raw.block.into_iter().map(|b| b.into_inner().name.into_inner()).collect();
        names.dedup();
        Ok(names)
    }

    /// The responsibilities the block `responsibility` starts after: its `after`, or else the
    /// block above it in the manifest.
    pub fn explicit_after(&self, responsibility: &str) -> Vec<String> {
        let Some(i) = self.blocks.iter().position(|b| b.responsibility == responsibility) else { return Vec::new() };
        match &self.blocks[i].after {
            Some(after) => after.clone(),
            None => i.checked_sub(1).map(|p| self.blocks[p].responsibility.clone()).into_iter().collect(),
        }
    }

    /// The block with `responsibility`.
    pub fn block(&self, responsibility: &str) -> Option<&BlockSpec> {
        self.blocks.iter().find(|b| b.responsibility == responsibility)
    }
}

fn block_spec(at: &Locator<'_>, dir: &Path, raw: RawBlock, line: usize) -> Result<BlockSpec, ManifestError> {
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
    let mut limits = Limits::default();
    if let Some(v) = &raw.queue {
        limits.queue = at.in_range(v, "queue", 1, 1 << 20)? as usize;
    }
    if let Some(v) = &raw.memory_mb {
        limits.memory_bytes = (at.in_range(v, "memory_mb", 1, 4096)? as usize) << 20;
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
    let init_retries = match &raw.init_retries {
        Some(v) => at.in_range(v, "init_retries", 0, 1000)? as u32,
        None => 0,
    };
    let after = raw.after.map(Spanned::into_inner);
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
    let grants = |key: &str, raw: &Option<Spanned<Vec<String>>>| -> Result<Vec<String>, ManifestError> {
        let Some(list) = raw else { return Ok(Vec::new()) };
        for subject in list.get_ref() {
            if !crate::io::server::subject::valid_subscribe(subject) {
                return Err(at.error(
                    list.span(),
                    key,
                    format!("`{subject}` is not a subject (tokens separated by dots; * and > as wildcards)"),
                ));
            }
        }
        Ok(list.get_ref().clone())
    };
    let publish = grants("publish", &raw.publish)?;
    let subscribe = grants("subscribe", &raw.subscribe)?;
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
    let config = match raw.config {
        Some(table) => match toml_to_json(toml::Value::Table(table)) {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        None => serde_json::Map::new(),
    };
    Ok(BlockSpec {
        name: name.clone(),
        responsibility,
        component,
        config,
        limits,
        policy,
        after,
        required: raw.required.unwrap_or(true),
        init_retries,
        listen,
        connect,
        publish,
        subscribe,
        durable: raw.durable.unwrap_or(false),
        shared: raw.shared.unwrap_or(false),
        line,
    })
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

/// Turns byte offsets into the file, line and key of a message.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn error(&self, span: Range<usize>, key: &str, message: String) -> ManifestError {
        self.error_at_line(self.line(span.start), Some(key), message)
    }

    fn error_at_line(&self, line: usize, key: Option<&str>, message: String) -> ManifestError {
        ManifestError { file: self.file.to_path_buf(), line: Some(line), key: key.map(str::to_owned), message }
    }

    fn in_range(&self, v: &Spanned<u64>, key: &str, min: u64, max: u64) -> Result<u64, ManifestError> {
        let value = *v.get_ref();
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(self.error(v.span(), key, format!("{value} is out of range ({min} to {max})")))
        }
    }

    /// A TOML or shape error: the key is the one written on the line the error points at.
    fn toml_error(&self, e: &toml::de::Error) -> ManifestError {
        let message = e.message().trim_end().to_owned();
        let Some(span) = e.span() else {
            return ManifestError { file: self.file.to_path_buf(), line: None, key: None, message };
        };
        let line_no = self.line(span.start);
        let line_text = self.text.lines().nth(line_no - 1).unwrap_or_default();
        let key = line_text
            .split_once('=')
            .map(|(k, _)| k.trim())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
            .map(|k| k.trim_matches('"').to_owned());
        ManifestError { file: self.file.to_path_buf(), line: Some(line_no), key, message }
    }
}

#[cfg(test)]
mod tests;
