//! The manifest reader on any text: it never panics, and a refusal names the file, and a line
//! that is in it.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// The component names the corpus uses, present (empty) beside the manifest so that reading
/// gets past the component check to the checks after it.
const COMPONENTS: &[&str] = &["a", "b", "source", "transform", "sink", "syslog", "jsonl", "http", "recorder"];

/// A directory of this process holding the components.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("bagpipe-fuzz-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating a directory for the components");
        for name in COMPONENTS {
            std::fs::write(dir.join(format!("{name}.wasm")), b"").expect("writing a component");
        }
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = dir().join("bagpipe.toml");
    match bagpipe::Manifest::parse(&file, text) {
        Ok(manifest) => assert!(!manifest.blocks.is_empty(), "a manifest with no blocks was accepted"),
        Err(e) => {
            assert!(e.to_string().contains("bagpipe.toml"), "{e} does not name the file");
            assert!(!e.message.is_empty(), "{e} does not say what is wrong");
            if let Some(line) = e.line {
                assert!((1..=text.lines().count().max(1)).contains(&line), "{e}: line {line} is not in the text");
            }
        }
    }
});
