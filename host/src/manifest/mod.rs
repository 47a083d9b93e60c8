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

use serde::Deserialize;
use toml::Spanned;

use crate::defaults::{Limits, MANIFEST_FILE, OutboxMode, Policy, Settings};
use crate::deps::{DepError, Graph};
use crate::error::ManifestError;
use block::{RawBlock, block_spec};
use settings::{RawHost, settings};

mod block;
mod listen;
mod settings;
pub(crate) mod subject;
mod topics;
mod workers;

pub use listen::{Listen, Protocol};
pub use topics::{TopicGrants, TopicSub};

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
    /// Other blocks it may finish (`"*"`: any); it may always finish itself and ask for shutdown.
    pub control: Vec<String>,
    /// Bags to it go through a stream on the server and survive a host crash.
    pub durable: bool,
    /// Bags to it go through the cluster even from this host, so every host running it shares
    /// the work.
    pub shared: bool,
    /// Which of what it publishes counts as done only once a JetStream stream acknowledged it
    /// (at-least-once from `publish` to the stream); the rest once the server read it.
    pub publish_to_stream: ToStream,
    /// Where what it publishes waits for the server: in memory, or on disk under the host's
    /// state directory (outliving the host).
    pub outbox: OutboxMode,
    /// What it may emit, what it is subscribed to from the start, and what it may subscribe to.
    pub topics: TopicGrants,
    /// How many instances serve it at once (one, unless `workers` says more).
    pub workers: crate::defaults::Workers,
    /// The bag field whose value keeps bags to one worker at a time (order per key).
    pub partition: Option<String>,
    /// The line of the block's `[[block]]` entry, for messages.
    pub line: usize,
}

/// Which of a block's publishes go to a JetStream stream (`publish_to_stream`): none (`false`),
/// all (`true`), or those on the subjects listed (NATS wildcards).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ToStream {
    /// None: done once the server read them.
    #[default]
    None,
    /// Every publish.
    All,
    /// Publishes on these subjects.
    Subjects(Vec<String>),
}

impl ToStream {
    /// Whether a publish on `subject` goes to a stream.
    pub fn covers(&self, subject: &str) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Subjects(patterns) => patterns.iter().any(|p| subject::covers(p, subject)),
        }
    }

    /// Whether any publish may go to a stream.
    pub fn any(&self) -> bool {
        !matches!(self, Self::None)
    }
}

impl BlockSpec {
    /// This entry with the routing (`durable`, `shared`, `publish_to_stream`, `outbox`,
    /// `workers`, `partition`) of `running`, and whether it differed: how bags reach a block (and
    /// which of its workers), and where its outbox keeps and publishes messages are set up when
    /// it is added and change only when the host restarts.
    /// (Its grants change live: see the supervisor's `reconfigure`.)
    pub fn keeping_routing_of(&self, running: &BlockSpec) -> (BlockSpec, bool) {
        let routing = |s: &BlockSpec| {
            (s.durable, s.shared, s.publish_to_stream.clone(), s.outbox, s.workers.clone(), s.partition.clone())
        };
        let changed = routing(self) != routing(running);
        let mut kept = self.clone();
        (kept.durable, kept.shared, kept.publish_to_stream, kept.outbox, kept.workers, kept.partition) =
            routing(running);
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
    #[serde(default)]
    stream: Vec<settings::RawStream>,
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
        let at = Locator::new(file, text);
        let raw: RawManifest = toml::from_str(text).map_err(|e| at.toml_error(&e))?;
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dead_letters = raw.host.dead_letters.clone();
        let mut settings = settings(&at, raw.host)?;
        settings.streams = settings::streams(&at, raw.stream)?;
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
        for block in &blocks {
            if let Some(unknown) =
                block.control.iter().find(|c| *c != "*" && !blocks.iter().any(|b| b.responsibility == **c))
            {
                return Err(at.error_at_line(
                    block.line,
                    Some("control"),
                    format!(
                        "block `{}` may finish `{unknown}`, but no block has that responsibility",
                        block.responsibility
                    ),
                ));
            }
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
        let raw: RawManifest = toml::from_str(&text).map_err(|e| Locator::new(&file, &text).toml_error(&e))?;
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

/// Turns byte offsets into the file, line and key of a message.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Where each line break is, found on the first question (a manifest of thousands of blocks
    /// asks thousands of times).
    breaks: std::cell::OnceCell<Vec<usize>>,
}

impl<'a> Locator<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        Self { file, text, breaks: std::cell::OnceCell::new() }
    }

    fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        let breaks = self
            .breaks
            .get_or_init(|| self.text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i).collect());
        breaks.partition_point(|&at| at < offset) + 1
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
        // An error at the end of a text that ends with a newline (an unterminated string, say)
        // is one past its last line: name the last line, which is in the file.
        let line_no = line_no.min(self.text.lines().count().max(1));
        ManifestError { file: self.file.to_path_buf(), line: Some(line_no), key, message }
    }
}

#[cfg(test)]
mod tests;
