//! Blocks written in Python and JavaScript, built for the tests from their sources by
//! `guest-sdk/build-block` (which installs the pinned toolchains under `target/tools` on first
//! use). A build is kept in `target/polyglot/` under a name that hashes its source, the SDKs and
//! the WIT, so each one is built once across test runs until one of those changes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::workspace_root;

/// One build at a time in a test process: several tests may want the same block. Across
/// processes (a test run beside the benchmark), a lock file does the same.
static BUILDING: Mutex<()> = Mutex::new(());

/// What every build depends on besides its own source.
fn sdk_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("wit/block.wit"), root.join("guest-sdk/build-block")];
    for (dir, ext) in [("guest-sdk/python/bagpipe", "py"), ("guest-sdk/js", "js"), ("guest-sdk/js", "mjs")] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else { continue };
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == ext)));
    }
    files.extend([root.join("guest-sdk/python/requirements.txt"), root.join("guest-sdk/js/package-lock.json")]);
    files.sort();
    files
}

/// The component built from `source` (a `.py` or `.js` block module); panics with the builder's
/// output when the build fails.
pub fn block(source: &Path) -> PathBuf {
    try_block(source).unwrap_or_else(|e| panic!("{e}"))
}

/// [`block`], saying why when the build fails (the benchmark goes on without it).
pub fn try_block(source: &Path) -> Result<PathBuf, String> {
    let root = workspace_root().canonicalize().expect("workspace root");
    let mut hash = Sha256::new();
    // A JS build reads the module's whole directory; hashing the module itself is enough for
    // the blocks here, which import only the SDK.
    hash.update(std::fs::read(source).unwrap_or_else(|e| panic!("reading {}: {e}", source.display())));
    for file in sdk_files(&root) {
        hash.update(file.to_string_lossy().as_bytes());
        hash.update(std::fs::read(&file).unwrap_or_default());
    }
    let digest: String = hash.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect();
    let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("block");
    let out = root.join("target/polyglot").join(format!("{stem}-{digest}.wasm"));
    let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    std::fs::create_dir_all(root.join("target/polyglot")).map_err(|e| format!("creating target/polyglot: {e}"))?;
    let lock = std::fs::File::create(root.join("target/polyglot/.lock")).map_err(|e| format!("lock file: {e}"))?;
    lock.lock().map_err(|e| format!("locking target/polyglot: {e}"))?;
    if out.is_file() {
        return Ok(out);
    }
    let built = Command::new("bash")
        .arg(root.join("guest-sdk/build-block"))
        .arg(source)
        .arg(&out)
        .output()
        .map_err(|e| format!("running guest-sdk/build-block: {e}"))?;
    if !built.status.success() || !out.is_file() {
        return Err(format!(
            "building {} failed ({}):\n{}{}",
            source.display(),
            built.status,
            String::from_utf8_lossy(&built.stdout),
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    Ok(out)
}

/// The component built from a module whose text is `text`, written as `file` (e.g. a second
/// version of an example, for a swap).
pub fn block_from_text(file: &str, text: &str) -> PathBuf {
    let digest: String = Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect();
    let dir = workspace_root().join("target/polyglot/src").join(digest);
    std::fs::create_dir_all(&dir).expect("creating a source directory");
    let source = dir.join(file);
    std::fs::write(&source, text).expect("writing a block's source");
    block(&source)
}

/// The example Python block, `examples/polyglot/src/enrich.py`.
pub fn enrich() -> PathBuf {
    block(&workspace_root().join("examples/polyglot/src/enrich.py"))
}

/// The example JavaScript block, `examples/polyglot/src/tag.js`.
pub fn tag() -> PathBuf {
    block(&workspace_root().join("examples/polyglot/src/tag.js"))
}
