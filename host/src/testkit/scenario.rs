//! Scenario files: tests of a block without Rust (`bagpipe test DIR`). Each `tests/*.toml` next
//! to a manifest names one of its blocks, maybe a config of its own, and steps: one action each
//! (a bag, a call, bytes on a connection, a datagram, a server message, time) and what that
//! action must make the block do. Other blocks of the manifest are stand-ins that record.
//!
//! ```toml
//! block = "upper"                       # a responsibility in ../bagpipe.toml
//! config = { op = "upper", to = "sink" } # replaces its config (optional)
//!
//! [[step]]
//! enqueue = { text = "hi" }
//! expect.bags.sink = [{ text = "HI" }]   # every stand-in that got bags, each bag matched by subset
//! ```
//!
//! A bag matches when every key it lists has that value (recursively; `whole = true` compares
//! whole bags, host keys aside). `expect.bags` lists every stand-in that got something in that
//! step: one left out must have got nothing. Everything a step caused is taken at that step,
//! checked or not. A failing step prints a diff and the run fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::diff::{diff, pruned, subset};
use super::{Bench, Conn, Setup, without_host_keys};
use crate::manifest::Manifest;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// The responsibility under test.
    pub block: String,
    /// Its config for this scenario (otherwise the manifest's).
    pub config: Option<toml::Table>,
    /// More stand-ins than the manifest's other blocks.
    #[serde(default)]
    pub stand_ins: Vec<String>,
    /// Whether it gets a message server.
    #[serde(default)]
    pub server: bool,
    /// The steps, in order.
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}

/// One action and what it must cause.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// A bag to give the block.
    pub enqueue: Option<toml::Table>,
    /// A call to make to the block (its answer is `expect.answer`).
    pub call: Option<toml::Table>,
    /// Open a connection to its TCP listener (`tcp`, or text its URL contains).
    pub connect: Option<String>,
    /// Bytes to write on the last connection opened.
    pub send: Option<String>,
    /// Close the last connection opened.
    #[serde(default)]
    pub close: bool,
    /// A datagram to send to its UDP listener.
    pub datagram: Option<String>,
    /// A server message (with `server = true`).
    pub message: Option<Message>,
    /// Move the clock this many milliseconds.
    pub advance_ms: Option<u64>,
    /// What it must cause.
    #[serde(default)]
    pub expect: Expect,
}

/// A server message a step sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Its subject.
    pub subject: String,
    /// Its payload: text as it is, a table as JSON.
    #[serde(default)]
    pub payload: Option<toml::Value>,
    /// Its reply subject: what the block publishes there is in `expect.published`.
    pub reply: Option<String>,
}

/// A message the block must have published.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishedMessage {
    /// Its subject.
    pub subject: String,
    /// Its payload (matched by subset when a table; host keys aside).
    pub payload: Option<toml::Value>,
}

/// A line the block must have logged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogExpect {
    /// Its level (`trace` ... `error`); any when left out.
    pub level: Option<String>,
    /// A part of its message.
    pub message: String,
}

/// How the step's call must have failed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailureExpect {
    /// `timeout`, `faulted`, `refused`, `no-reply` or `unavailable`.
    pub error: String,
    /// A part of why.
    pub why: Option<String>,
}

/// What a step must make the block do; what is left out is not checked.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The bags each stand-in got (every stand-in that got any).
    pub bags: Option<BTreeMap<String, Vec<toml::Value>>>,
    /// Compare whole bags (host keys aside) instead of by subset.
    #[serde(default)]
    pub whole: bool,
    /// What it wrote back on the last connection.
    pub received: Option<String>,
    /// What it published, in order (needs `server = true`).
    pub published: Option<Vec<PublishedMessage>>,
    /// The answer to the step's call (by subset).
    pub answer: Option<toml::Value>,
    /// How the step's call failed instead.
    pub failure: Option<FailureExpect>,
    /// Lines it logged (each one a line of its log, in any order).
    pub logs: Option<Vec<LogExpect>>,
    /// Texts what it printed must contain.
    pub printed: Option<Vec<String>>,
    /// How many faults.
    pub faults: Option<usize>,
}

/// How a scenario went: its failures, each with a readable explanation.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `step N: what` and a diff, for each failure.
    pub failures: Vec<String>,
}

/// The scenario files of the component directory `dir` (`tests/*.toml`), sorted.
pub fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let tests = dir.join("tests");
    if !tests.is_dir() {
        return Ok(Vec::new());
    }
    let mut files: Vec<_> = std::fs::read_dir(tests)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Reads the scenario file `path`, saying which file and what is wrong.
pub fn read(path: &Path) -> Result<Scenario, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A TOML value as JSON (a date and time as its text).
fn json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(json).collect()),
        toml::Value::Table(table) => table_json(table),
    }
}

fn table_json(table: &toml::Table) -> Value {
    Value::Object(table.iter().map(|(k, v)| (k.clone(), json(v))).collect())
}

/// Runs `scenario` on its block of `manifest`.
pub async fn run(manifest: &Manifest, scenario: &Scenario) -> Result<Outcome, String> {
    let spec = manifest
        .block(&scenario.block)
        .ok_or_else(|| format!("the manifest has no block `{}`", scenario.block))?
        .clone();
    let mut setup = Setup::from_spec(spec);
    if let Some(config) = &scenario.config {
        setup = setup.config(table_json(config)).map_err(|e| e.to_string())?;
    }
    let others = manifest.blocks.iter().map(|b| b.responsibility.clone()).filter(|r| *r != scenario.block);
    let mut names: Vec<String> = others.chain(scenario.stand_ins.iter().cloned()).collect();
    names.sort();
    names.dedup();
    setup.stand_ins = names.into_iter().map(|n| (n, None)).collect();
    setup.server = scenario.server;
    let mut bench = Bench::start(setup).await.map_err(|e| e.to_string())?;
    let mut outcome = Outcome::default();
    let mut conn = None;
    for (i, step) in scenario.steps.iter().enumerate() {
        let n = i + 1;
        match play(&mut bench, step, &mut conn).await {
            Ok(played) => check(&mut bench, scenario, step, conn, played, n, &mut outcome).await,
            Err(e) => {
                outcome.failures.push(format!("step {n}: {e}"));
                // What it did meanwhile is not the next step's.
                let _ = (bench.sent(), bench.logs(), bench.printed(), bench.faults(), bench.published());
                if let Some(c) = conn {
                    let _ = bench.received(c).await;
                }
            }
        }
    }
    if let Err(e) = bench.finish().await {
        outcome.failures.push(format!("finishing: {e}"));
    }
    Ok(outcome)
}

/// What a step's action gave back: the call's outcome, what was written back on a connection
/// it closed.
#[derive(Default)]
struct Played {
    outcome: Option<Result<Value, super::CallFailure>>,
    received: Vec<u8>,
}

/// Does the step's action.
async fn play(bench: &mut Bench, step: &Step, conn: &mut Option<Conn>) -> Result<Played, String> {
    let mut played = Played::default();
    let e = |e: super::TestError| e.to_string();
    if let Some(bag) = &step.enqueue {
        bench.enqueue(&table_json(bag)).await.map_err(e)?;
    }
    if let Some(which) = &step.connect {
        let which = (which != "tcp").then_some(which.as_str());
        *conn = Some(bench.connect(which).await.map_err(e)?);
    }
    if let Some(bytes) = &step.send {
        let c = conn.ok_or("`send` before any `connect`")?;
        bench.send(c, bytes.as_bytes()).await.map_err(e)?;
    }
    if step.close {
        let c = conn.take().ok_or("`close` before any `connect`")?;
        // What it wrote before the close is this step's to check.
        played.received = bench.received(c).await.map_err(e)?;
        bench.close(c).await.map_err(e)?;
    }
    if let Some(bytes) = &step.datagram {
        bench.datagram(None, bytes.as_bytes()).await.map_err(e)?;
    }
    if let Some(message) = &step.message {
        let payload = match &message.payload {
            Some(toml::Value::String(text)) => text.clone(),
            Some(other) => json(other).to_string(),
            None => String::new(),
        };
        bench.message(&message.subject, payload.as_bytes(), message.reply.as_deref()).await.map_err(e)?;
    }
    if let Some(ms) = step.advance_ms {
        bench.advance(Duration::from_millis(ms)).await.map_err(e)?;
    }
    if let Some(bag) = &step.call {
        played.outcome = Some(bench.call(&table_json(bag)).await.map_err(e)?);
    }
    Ok(played)
}

/// Checks what the step caused against its `expect`. Every output is taken at every step,
/// checked or not, so what one step caused is never the next one's.
async fn check(
    bench: &mut Bench,
    scenario: &Scenario,
    step: &Step,
    conn: Option<Conn>,
    played: Played,
    n: usize,
    out: &mut Outcome,
) {
    let x = &step.expect;
    let sent = bench.sent();
    let mut received = played.received;
    if let Some(c) = conn {
        received.extend(bench.received(c).await.unwrap_or_default());
    }
    let published = if scenario.server { bench.published().unwrap_or_default() } else { Vec::new() };
    let logs = bench.logs();
    let printed = bench.printed();
    let faults = bench.faults();
    let mut fail = |what: &str, diff: String| out.failures.push(format!("step {n}: {what}\n{diff}"));

    if let Some(bags) = &x.bags {
        let mut names: Vec<&String> = bags.keys().chain(sent.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            let want: Vec<Value> = bags.get(name).map(|b| b.iter().map(json).collect()).unwrap_or_default();
            let got: Vec<Value> =
                sent.get(name).map(|a| a.iter().map(|a| without_host_keys(&a.bag)).collect()).unwrap_or_default();
            let matches = want.len() == got.len()
                && want.iter().zip(&got).all(|(w, g)| if x.whole { w == g } else { subset(w, g) });
            if !matches {
                let (want, got) = (Value::from(want), Value::from(got));
                let shown = if x.whole { got } else { pruned(&want, &got) };
                fail(&format!("the bags `{name}` got"), diff(&want, &shown));
            }
        }
    }
    if let Some(want) = &x.received {
        let got = String::from_utf8_lossy(&received);
        if *want != got {
            fail("what it wrote back", text_diff(want, &got));
        }
    }
    if let Some(want) = &x.published {
        if !scenario.server {
            fail("what it published", "  the scenario has no server: set `server = true`\n".to_owned());
        } else {
            let got: Vec<Value> = published
                .iter()
                .map(|p| {
                    let payload = serde_json::from_slice::<Value>(&p.payload)
                        .map(|v| without_host_keys(&v))
                        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&p.payload).into_owned()));
                    serde_json::json!({ "subject": p.subject, "payload": payload })
                })
                .collect();
            let want: Vec<Value> = want
                .iter()
                .map(|w| match &w.payload {
                    Some(payload) => serde_json::json!({ "subject": w.subject, "payload": json(payload) }),
                    None => serde_json::json!({ "subject": w.subject }),
                })
                .collect();
            if want.len() != got.len() || !want.iter().zip(&got).all(|(w, g)| subset(w, g)) {
                let (want, got) = (Value::from(want), Value::from(got));
                fail("what it published", diff(&want, &pruned(&want, &got)));
            }
        }
    }
    match (&x.answer, &x.failure, &played.outcome) {
        (Some(want), _, Some(Ok(got))) => {
            let want = json(want);
            if !subset(&want, got) {
                fail("the call's answer", diff(&want, &pruned(&want, got)));
            }
        }
        (Some(_), _, Some(Err(failure))) => {
            fail("the call's answer", format!("  the call failed: {}\n", failure_text(failure)));
        }
        (None, Some(want), Some(Err(failure))) => {
            let (kind, why) = failure_parts(failure);
            let why_matches = want.why.as_deref().is_none_or(|w| why.is_some_and(|why| why.contains(w)));
            if want.error != kind || !why_matches {
                fail(
                    "how the call failed",
                    text_diff(&format!("{} {:?}", want.error, want.why), &failure_text(failure)),
                );
            }
        }
        (None, Some(_), Some(Ok(got))) => fail("how the call failed", format!("  it was answered: {got}\n")),
        (Some(_), _, None) | (None, Some(_), None) => {
            fail("the call", "  the step makes no call (`call = { .. }`)\n".to_owned());
        }
        (None, None, _) => {}
    }
    for line in x.logs.iter().flatten() {
        let found = logs
            .iter()
            .any(|l| line.level.as_deref().is_none_or(|lv| l.level == lv) && l.message.contains(&line.message));
        if !found {
            let got: Vec<String> = logs.iter().map(|l| format!("{}: {}", l.level, l.message)).collect();
            let want = format!("{}: ..{}..", line.level.as_deref().unwrap_or("any level"), line.message);
            fail("a log line", format!("  expected a line like\n    {want}\n  got\n    {}\n", got.join("\n    ")));
        }
    }
    for text in x.printed.iter().flatten() {
        if !printed.contains(text.as_str()) {
            fail(
                "what it printed",
                format!(
                    "  expected it to contain\n    {text}\n  got\n    {}\n",
                    printed.trim_end().replace('\n', "\n    ")
                ),
            );
        }
    }
    if let Some(want) = x.faults
        && faults.len() != want
    {
        let got: Vec<String> = faults.iter().map(|f| f.to_string()).collect();
        fail("its faults", format!("  expected {want}, got {}:\n    {}\n", got.len(), got.join("\n    ")));
    }
}

/// Two texts, line by line.
fn text_diff(want: &str, got: &str) -> String {
    let lines = |t: &str| Value::Array(t.split_inclusive('\n').map(Value::from).collect());
    diff(&lines(want), &lines(got))
}

/// A call's failure: its kind (`refused`...) and why, when it says.
fn failure_parts(failure: &super::CallFailure) -> (&'static str, Option<&str>) {
    use super::CallFailure as F;
    match failure {
        F::Timeout => ("timeout", None),
        F::Faulted(why) => ("faulted", Some(why)),
        F::Refused(why) => ("refused", Some(why)),
        F::NoReply => ("no-reply", None),
        F::Unavailable(why) => ("unavailable", Some(why)),
    }
}

fn failure_text(failure: &super::CallFailure) -> String {
    match failure_parts(failure) {
        (kind, Some(why)) => format!("{kind}: {why}"),
        (kind, None) => kind.to_owned(),
    }
}
