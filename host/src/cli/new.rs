//! `bagpipe new`: writes a new block crate (source, tests through `bagpipe-test`, a manifest, a
//! scenario) from the templates in `templates/`, depending on the guest and test SDKs of a
//! bagpipe repository by absolute path, so the crate builds wherever it is put.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// The kind of block a new crate starts as.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Changes each bag it takes and passes it on to `to`.
    Transform,
    /// Listens on TCP: each line a client sends becomes a bag for `to`, answered `ok`.
    Protocol,
    /// Prints each bag it takes and counts them.
    Sink,
}

/// The files that differ between kinds.
struct KindFiles {
    /// `src/lib.rs`.
    lib: &'static str,
    /// `tests/block.rs`.
    test: &'static str,
    /// `bagpipe.toml`.
    manifest: &'static str,
    /// `tests/<name>.toml`.
    scenario: &'static str,
    /// What the block does, for its README.
    about: &'static str,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Transform => "transform",
            Kind::Protocol => "protocol",
            Kind::Sink => "sink",
        }
    }

    fn files(self) -> KindFiles {
        match self {
            Kind::Transform => KindFiles {
                lib: include_str!("templates/transform.rs"),
                test: include_str!("templates/transform_test.rs"),
                manifest: include_str!("templates/transform.bagpipe.toml"),
                scenario: include_str!("templates/transform.scenario.toml"),
                about: "it passes every bag it takes on to `to`, with `\"seen\": true` added.",
            },
            Kind::Protocol => KindFiles {
                lib: include_str!("templates/protocol.rs"),
                test: include_str!("templates/protocol_test.rs"),
                manifest: include_str!("templates/protocol.bagpipe.toml"),
                scenario: include_str!("templates/protocol.scenario.toml"),
                about: "each line a TCP client sends becomes a bag `{\"line\": ...}` for `to`, answered `ok`.",
            },
            Kind::Sink => KindFiles {
                lib: include_str!("templates/sink.rs"),
                test: include_str!("templates/sink_test.rs"),
                manifest: include_str!("templates/sink.bagpipe.toml"),
                scenario: include_str!("templates/sink.scenario.toml"),
                about: "it prints every bag it takes as a JSON line and counts them.",
            },
        }
    }
}

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.tmpl");
const README: &str = include_str!("templates/README.md.tmpl");
const GITIGNORE: &str = include_str!("templates/gitignore.tmpl");

/// Names that would not build or would clash: Rust keywords (the crate's name is an identifier),
/// the crates it depends on or that every crate has, and the host's built-in responsibilities.
const RESERVED: &str = "\
    abstract alloc as async await bagpipe bagpipe_guest bagpipe_test become box break const continue \
    core crate do dyn else enum extern false final finisher fn for gen if impl in initiator let loop \
    macro match mod move mut override priv proc_macro pub ref return self static std struct super test \
    trait true try type typeof unsafe unsized use virtual where while yield";

/// The longest block name taken.
const MAX_NAME: usize = 64;

/// Writes the crate of a new `kind` block called `name` into `dir/name`, depending on the SDKs
/// of the bagpipe repository `sdk` (default: the one this binary was built from).
pub fn new_block(name: &str, kind: Kind, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<ExitCode> {
    check_name(name)?;
    let repo = sdk_repo(sdk)?;
    let root = dir.join(name);
    if root.symlink_metadata().is_ok() {
        bail!("`{}` already exists: choose another name, or another directory with --dir", root.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    std::fs::create_dir(&root).with_context(|| format!("creating `{}`", root.display()))?;
    let files = render_files(name, kind, &repo)?;
    if let Err(e) = write_files(&root, &files) {
        // Leave nothing half-written behind: the directory is ours, just created.
        let _ = std::fs::remove_dir_all(&root);
        return Err(e);
    }
    print_summary(name, kind, &root, &repo, &files);
    Ok(ExitCode::SUCCESS)
}

/// A block's name names its crate, its component and its responsibility.
fn check_name(name: &str) -> anyhow::Result<()> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || !name.chars().all(allowed) || name.len() > MAX_NAME {
        bail!(
            "`{name}` is not a block name: use lowercase letters, digits, `-` and `_`, starting with a letter, \
             at most {MAX_NAME} characters (it names the crate, its component and its responsibility)"
        );
    }
    if RESERVED.split_whitespace().any(|word| word == name.replace('-', "_")) {
        bail!(
            "`{name}` cannot name a block: it is a Rust keyword, a crate it would clash with, or built into the host"
        );
    }
    Ok(())
}

/// The bagpipe repository whose `guest-sdk/` and `test-sdk/` the crate depends on, absolute.
fn sdk_repo(sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let (repo, hint) = match sdk {
        Some(repo) => (repo.to_path_buf(), ""),
        None => match Path::new(env!("CARGO_MANIFEST_DIR")).parent() {
            Some(repo) => (repo.to_path_buf(), " (the repository this binary was built from; give another with --sdk)"),
            None => bail!("this binary does not know the repository it was built from: give it with --sdk"),
        },
    };
    let repo = repo
        .canonicalize()
        .with_context(|| format!("the bagpipe repository `{}`{hint} cannot be found", repo.display()))?;
    for sdk in ["guest-sdk", "test-sdk"] {
        if !repo.join(sdk).join("Cargo.toml").is_file() {
            bail!("`{}`{hint} is not a bagpipe repository: it has no `{sdk}/Cargo.toml`", repo.display());
        }
    }
    Ok(repo)
}

/// `path` as a TOML string, quoted and escaped.
fn toml_path(path: &Path) -> anyhow::Result<String> {
    let text = path.to_str().with_context(|| format!("`{}` is not UTF-8: cargo cannot use it", path.display()))?;
    Ok(toml::Value::String(text.to_owned()).to_string())
}

/// The repository's `[profile.dev]` settings (line tables only; cranelift optimised in debug
/// builds, as the tests compile components with it), so `cargo test` in the new crate is as fast
/// and as small on disk as in the repository and shares its compiled dependencies. Empty when
/// there are none.
fn dev_profiles(repo: &Path) -> String {
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap_or_default();
    let Ok(table) = manifest.parse::<toml::Table>() else { return String::new() };
    let Some(dev) = table.get("profile").and_then(|p| p.get("dev")) else {
        return String::new();
    };
    let mut profile = toml::Table::new();
    profile.insert("dev".to_owned(), dev.clone());
    let mut wrapped = toml::Table::new();
    wrapped.insert("profile".to_owned(), profile.into());
    match toml::to_string(&wrapped) {
        Ok(text) => format!(
            "\n# As the bagpipe repository builds for tests: line tables only (test binaries link the host),\n\
             # and cranelift optimised even in debug builds (the tests compile the block with it).\n{text}"
        ),
        Err(_) => String::new(),
    }
}

/// The repository's `[toolchain]` (the Rust release the host is built and tested with), if it
/// pins one.
fn toolchain(repo: &Path) -> Option<String> {
    let text = std::fs::read_to_string(repo.join("rust-toolchain.toml")).ok()?;
    let pinned = text.parse::<toml::Table>().ok()?.remove("toolchain")?;
    let mut table = toml::Table::new();
    table.insert("toolchain".to_owned(), pinned);
    let text = toml::to_string(&table).ok()?;
    Some(format!("# The Rust release the bagpipe host in {} is built and tested with.\n{text}", repo.display()))
}

/// Replaces every `{{key}}` of `template`; the text ends with one newline.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let text =
        vars.iter().fold(template.to_owned(), |text, (key, value)| text.replace(&format!("{{{{{key}}}}}"), value));
    format!("{}\n", text.trim_end())
}

/// Every file of the new crate: its path in the crate, its content.
fn render_files(name: &str, kind: Kind, repo: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let crate_name = name.replace('-', "_");
    let responsibility = if crate_name == name { String::new() } else { format!("responsibility = \"{name}\"\n") };
    let guest_sdk = toml_path(&repo.join("guest-sdk"))?;
    let test_sdk = toml_path(&repo.join("test-sdk"))?;
    let repo_text = repo.display().to_string();
    let profiles = dev_profiles(repo);
    let files = kind.files();
    let vars = [
        ("name", name),
        ("crate", &crate_name),
        ("kind", kind.name()),
        ("about", files.about),
        ("repo", &repo_text),
        ("responsibility", &responsibility),
        ("guest_sdk", &guest_sdk),
        ("test_sdk", &test_sdk),
        ("dev_profiles", &profiles),
    ];
    let mut out = vec![
        ("Cargo.toml".to_owned(), render(CARGO_TOML, &vars)),
        ("src/lib.rs".to_owned(), files.lib.to_owned()),
        ("tests/block.rs".to_owned(), files.test.to_owned()),
        ("bagpipe.toml".to_owned(), render(files.manifest, &vars)),
        (format!("tests/{name}.toml"), render(files.scenario, &vars)),
        ("README.md".to_owned(), render(README, &vars)),
        (".gitignore".to_owned(), GITIGNORE.to_owned()),
    ];
    // The versions bagpipe is built and tested with; cargo drops what the crate does not use.
    if let Ok(lock) = std::fs::read_to_string(repo.join("Cargo.lock")) {
        out.push(("Cargo.lock".to_owned(), lock));
    }
    if let Some(toolchain) = toolchain(repo) {
        out.push(("rust-toolchain.toml".to_owned(), toolchain));
    }
    Ok(out)
}

fn write_files(root: &Path, files: &[(String, String)]) -> anyhow::Result<()> {
    for (path, content) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating `{}`", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing `{}`", path.display()))?;
    }
    Ok(())
}

fn print_summary(name: &str, kind: Kind, root: &Path, repo: &Path, files: &[(String, String)]) {
    let mut text = format!("created the {} block `{name}` in {}:\n", kind.name(), root.display());
    for (path, _) in files {
        let _ = writeln!(text, "  {path}");
    }
    let crate_name = name.replace('-', "_");
    let _ = write!(
        text,
        "\nIt depends on bagpipe-guest and (for its tests) bagpipe-test in {repo}.\n\nNext:\n  \
         cd {root}\n  \
         rustup target add wasm32-wasip2   # once\n  \
         cargo test                        # build the component, run tests/block.rs in the real host\n  \
         bagpipe test . --build .          # build it, copy {crate_name}.wasm here, play tests/{name}.toml\n  \
         bagpipe run . --build .           # build it, copy {crate_name}.wasm here, run bagpipe.toml\n",
        repo = repo.display(),
        root = root.display(),
    );
    print!("{text}");
}
