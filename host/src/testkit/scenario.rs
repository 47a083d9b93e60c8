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
//! step: one left out must have got nothing. A failing step prints a diff and the run fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::diff::{diff, pruned, subset};
use super::{Bench, Conn, Setup};
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
    /// A server message: `{ subject, payload, reply }` (payload: text, or a table sent as JSON;
    /// what the block publishes to `reply` is in `expect.published`).
    pub message: Option<toml::Table>,
    /// Move the clock this many milliseconds.
    pub advance_ms: Option<u64>,
    /// What it must cause.
    #[serde(default)]
    pub expect: Expect,
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
    /// What it published: `{ subject, payload }` each, in order (payload matched by subset).
    pub published: Option<Vec<toml::Table>>,
    /// The answer to the step's call (by subset); a failure reads `{ error = "refused", why =
    /// ".." }` (`timeout`, `faulted`, `refused`, `no-reply`, `unavailable`).
    pub answer: Option<toml::Value>,
    /// Lines it logged: `{ level, message }`, each message a part of a line's.
    pub logs: Option<Vec<toml::Table>>,
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

fn json(value: &toml::Value) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn table_json(table: &toml::Table) -> Value {
    serde_json::to_value(table).unwrap_or(Value::Null)
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
            Ok(answer) => check(&mut bench, step, conn, answer, n, &mut outcome).await,
            Err(e) => outcome.failures.push(format!("step {n}: {e}")),
        }
    }
    if let Err(e) = bench.finish().await {
        outcome.failures.push(format!("finishing: {e}"));
    }
    Ok(outcome)
}

/// Does the step's action; the answer of a call.
async fn play(bench: &mut Bench, step: &Step, conn: &mut Option<Conn>) -> Result<Option<Value>, String> {
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
        bench.close(c).await.map_err(e)?;
    }
    if let Some(bytes) = &step.datagram {
        bench.datagram(None, bytes.as_bytes()).await.map_err(e)?;
    }
    if let Some(message) = &step.message {
        let subject = message.get("subject").and_then(toml::Value::as_str).ok_or("a `message` needs a `subject`")?;
        let payload = match message.get("payload") {
            Some(toml::Value::String(text)) => text.clone(),
            Some(other) => json(other).to_string(),
            None => String::new(),
        };
        let reply = message.get("reply").and_then(toml::Value::as_str);
        bench.message(subject, payload.as_bytes(), reply).await.map_err(e)?;
    }
    if let Some(ms) = step.advance_ms {
        bench.advance(Duration::from_millis(ms)).await;
    }
    if let Some(bag) = &step.call {
        let answer = bench.call(&table_json(bag)).await.map_err(e)?;
        return Ok(Some(match answer {
            Ok(answer) => answer,
            Err(failure) => failure_json(&failure),
        }));
    }
    Ok(None)
}

/// Checks what the step caused against its `expect`.
async fn check(bench: &mut Bench, step: &Step, conn: Option<Conn>, answer: Option<Value>, n: usize, out: &mut Outcome) {
    let x = &step.expect;
    let mut fail = |what: &str, expected: &Value, got: &Value| {
        out.failures.push(format!("step {n}: {what}\n{}", diff(expected, got)));
    };
    let sent = bench.sent();
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
                fail(&format!("the bags `{name}` got"), &want, &shown);
            }
        }
    }
    if let Some(want) = &x.received {
        let got = match conn {
            Some(c) => bench.received(c).await.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default(),
            None => String::new(),
        };
        if *want != got {
            fail("what it wrote back", &Value::from(want.as_str()), &Value::from(got));
        }
    }
    if let Some(want) = &x.published {
        let got: Vec<Value> = bench
            .published()
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let payload = serde_json::from_slice(&p.payload)
                    .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(&p.payload).into_owned()));
                serde_json::json!({ "subject": p.subject, "payload": payload })
            })
            .collect();
        let want: Vec<Value> = want.iter().map(table_json).collect();
        if want.len() != got.len() || !want.iter().zip(&got).all(|(w, g)| subset(w, g)) {
            let (want, got) = (Value::from(want), Value::from(got));
            fail("what it published", &want, &pruned(&want, &got));
        }
    }
    if let Some(want) = &x.answer {
        let want = json(want);
        let got = answer.unwrap_or(Value::Null);
        if !subset(&want, &got) {
            fail("the call's answer", &want, &pruned(&want, &got));
        }
    }
    let logs = bench.logs();
    if let Some(want) = &x.logs {
        for line in want {
            let level = line.get("level").and_then(toml::Value::as_str);
            let message = line.get("message").and_then(toml::Value::as_str).unwrap_or_default();
            let found = logs.iter().any(|l| level.is_none_or(|lv| l.level == lv) && l.message.contains(message));
            if !found {
                let got = serde_json::to_value(&logs).unwrap_or(Value::Null);
                fail("a log line", &table_json(line), &got);
            }
        }
    }
    let printed = bench.printed();
    for text in x.printed.iter().flatten() {
        if !printed.contains(text.as_str()) {
            fail("what it printed", &Value::from(text.as_str()), &Value::from(printed.as_str()));
        }
    }
    let faults = bench.faults();
    if let Some(want) = x.faults
        && faults.len() != want
    {
        let got: Vec<Value> = faults.iter().map(|f| Value::from(f.to_string())).collect();
        fail("its faults", &Value::from(want), &Value::from(got));
    }
}

/// A call's failure as a scenario writes it: `{ error = "refused", why = ".." }`.
fn failure_json(failure: &super::CallFailure) -> Value {
    use super::CallFailure as F;
    let (kind, why) = match failure {
        F::Timeout => ("timeout", None),
        F::Faulted(why) => ("faulted", Some(why)),
        F::Refused(why) => ("refused", Some(why)),
        F::NoReply => ("no-reply", None),
        F::Unavailable(why) => ("unavailable", Some(why)),
    };
    match why {
        Some(why) => serde_json::json!({ "error": kind, "why": why }),
        None => serde_json::json!({ "error": kind }),
    }
}

fn without_host_keys(bag: &Value) -> Value {
    match bag {
        Value::Object(map) => Value::Object(
            map.iter().filter(|(k, _)| !k.starts_with("__")).map(|(k, v)| (k.clone(), v.clone())).collect(),
        ),
        other => other.clone(),
    }
}
