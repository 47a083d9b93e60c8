//! `bagpipe test DIR`: runs the scenario files next to a manifest (`DIR/tests/*.toml`), each on a
//! fresh instance of its block (see `bagpipe::testkit::scenario`), prints `ok` or the failures
//! with their diffs, and fails when any scenario did.

use std::path::Path;
use std::process::ExitCode;

use bagpipe::Manifest;
use bagpipe::testkit::scenario;

/// Runs every scenario of `dir` (after building its components from `guests`, when given).
pub async fn test(dir: &Path, guests: Option<&Path>) -> anyhow::Result<ExitCode> {
    if let Some(guests) = guests {
        let names = Manifest::component_names(dir)?;
        let into = if dir.is_dir() { dir } else { dir.parent().unwrap_or(Path::new(".")) };
        bagpipe::build_into(guests, into, &names).await?;
    }
    let manifest = Manifest::load(dir)?;
    let home = manifest.path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let files = scenario::files(&home)?;
    if files.is_empty() {
        anyhow::bail!("no scenario files in {}", home.join("tests").display());
    }
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let name = file.strip_prefix(&home).unwrap_or(file).display().to_string();
        let outcome = match scenario::read(file) {
            Ok(s) => scenario::run(&manifest, &s).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(o) if o.failures.is_empty() => {
                passed += 1;
                println!("ok      {name}");
            }
            Ok(o) => {
                failed += 1;
                println!("FAILED  {name}");
                for failure in &o.failures {
                    println!("  {}", failure.replace('\n', "\n  "));
                }
            }
            Err(e) => {
                failed += 1;
                println!("FAILED  {name}\n  {e}");
            }
        }
    }
    println!("\n{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
