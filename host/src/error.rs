//! The host's public errors: what an embedder or the CLI can match on.
//!
//! Internals use `anyhow` with context; these enums are where that ends.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A manifest that cannot be used: which file, where, which key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// The 1-based line the problem is on, when there is one.
    pub line: Option<usize>,
    /// The key the problem is with, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ManifestError {
    pub(crate) fn new(file: &std::path::Path, message: String) -> Self {
        Self { file: file.to_path_buf(), line: None, key: None, message }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A component that cannot be used as a block.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read component `{path}`: {source}")]
    Read {
        /// The component file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than a component may be (or grew past it while being read).
    #[error("component `{path}` is larger than the limit of {limit} bytes; nothing of it was run")]
    TooLarge {
        /// The component file.
        path: PathBuf,
        /// The limit, in bytes.
        limit: u64,
    },
    /// Not a WebAssembly component (corrupt, truncated, a core module, ...).
    #[error("`{path}` is not a valid WebAssembly component: {reason}")]
    Invalid {
        /// The component file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// A component of another world: a required export is missing.
    #[error(
        "`{path}` is not a bagpipe block: it does not export `{missing}` (a block must export \
         init, run and finish, see wit/block.wit); it exports: {exports}"
    )]
    MissingExport {
        /// The component file.
        path: PathBuf,
        /// The missing export.
        missing: String,
        /// What the component exports instead.
        exports: String,
    },
    /// An export exists but does not match the world.
    #[error("`{path}`: export `{export}` does not match wit/block.wit: {reason}")]
    WrongExport {
        /// The component file.
        path: PathBuf,
        /// The mismatched export.
        export: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest gives the block something only an optional hook can use, and the component
    /// does not export that hook.
    #[error("`{path}` does not export `{hook}`, but {why}")]
    MissingHook {
        /// The component file.
        path: PathBuf,
        /// The missing hook interface.
        hook: String,
        /// What needs it.
        why: String,
    },
    /// The component imports something the host does not provide.
    #[error("`{path}` needs an import the host does not provide: {reason}")]
    Import {
        /// The component file.
        path: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
}

/// How a call into a block went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The block returned an error value. The block is fine and keeps running.
    #[error("{0}")]
    Guest(String),
    /// The guest trapped (a panic is a trap); `stderr` holds its last lines, where a panic
    /// message is.
    #[error("trapped: {trap}{}", fmt_stderr(.stderr))]
    Trap {
        /// The trap, as wasmtime describes it.
        trap: String,
        /// The guest's last stderr lines.
        stderr: Vec<String>,
    },
    /// The guest computed longer than its call timeout and was interrupted.
    #[error("ran longer than its call timeout of {0:?} and was stopped")]
    Deadline(Duration),
    /// The guest broke a resource limit (memory, stack).
    #[error("broke its {what} limit{}{}", .detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default(), fmt_stderr(.stderr))]
    Limit {
        /// Which limit.
        what: String,
        /// More about it, when there is more.
        detail: Option<String>,
        /// The guest's last stderr lines.
        stderr: Vec<String>,
    },
    /// The block is not running (it failed or finished earlier).
    #[error("block is not running")]
    Gone,
    /// The host itself failed while serving the block (a bug in the host, caught: the block
    /// ends, its queued bags become dead letters, the rest of the host carries on).
    #[error("the host failed while serving the block: {0}")]
    Host(String),
}

impl CallError {
    /// Whether the instance is dead after this error (everything but a returned error is).
    pub fn is_fault(&self) -> bool {
        !matches!(self, CallError::Guest(_))
    }
}

fn fmt_stderr(lines: &[String]) -> String {
    if lines.is_empty() { String::new() } else { format!(" (stderr: {})", lines.join(" | ")) }
}

/// Why `bagpipe run` stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The manifest is unusable.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A block's component is unusable.
    #[error("block `{responsibility}`: {source}")]
    Load {
        /// The block.
        responsibility: String,
        /// Why.
        source: LoadError,
    },
    /// A block's `init` failed; the blocks initialised before it were finished.
    #[error("block `{responsibility}` failed to initialise: {error}")]
    Init {
        /// The block.
        responsibility: String,
        /// Why.
        error: CallError,
    },
    /// The host itself could not go on.
    #[error("host error: {0:#}")]
    Host(#[from] anyhow::Error),
}
