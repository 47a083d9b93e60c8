//! `bagpipe test DIR`: scenario files next to a manifest run through the real binary. A passing
//! one says `ok`; a failing one prints a diff of what was expected and what the block did and
//! the exit status is non-zero; a malformed one names its file and what is wrong.

use bagpipe_test_support::{BlockDir, Finished, run_to_end};

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

const MANIFEST: &str = r#"
[[block]]
name = "transform"
responsibility = "upper"
[block.config]
op = "upper"
to = "sink"

[[block]]
name = "sink"
"#;

fn dir_with(scenarios: &[(&str, &str)]) -> BlockDir {
    let dir = BlockDir::from_manifest(MANIFEST);
    std::fs::create_dir(dir.path().join("tests")).expect("tests dir");
    for (name, text) in scenarios {
        dir.write(&format!("tests/{name}"), text.as_bytes());
    }
    dir
}

async fn test(dir: &BlockDir) -> Finished {
    run_to_end(BIN, ["test".as_ref(), dir.path().as_os_str()]).await
}

#[tokio::test]
async fn a_scenario_that_holds_passes() {
    let dir = dir_with(&[(
        "upper.toml",
        r#"
block = "upper"
[[step]]
enqueue = { text = "hi", n = 1 }
expect.bags.sink = [{ text = "HI" }]
[[step]]
enqueue = { text = "again" }
expect.whole = true
expect.bags.sink = [{ text = "AGAIN", seen_by_upper = 2 }]
expect.faults = 0
"#,
    )]);
    let out = test(&dir).await;
    out.assert_success();
    let text = out.stdout.join("\n");
    assert!(text.contains("ok      tests/upper.toml") && text.contains("1 passed, 0 failed"), "{text}");
}

#[tokio::test]
async fn a_failing_scenario_prints_a_diff_and_fails() {
    let dir = dir_with(&[
        (
            "a_good.toml",
            "block = \"upper\"\n[[step]]\nenqueue = { text = \"x\" }\nexpect.bags.sink = [{ text = \"X\" }]\n",
        ),
        (
            "b_bad.toml",
            "block = \"upper\"\n[[step]]\nenqueue = { text = \"hi\" }\nexpect.bags.sink = [{ text = \"hi\" }]\n",
        ),
        // The block sends to `sink`, so expecting nothing of it in this step fails too.
        ("c_silent.toml", "block = \"upper\"\n[[step]]\nenqueue = { text = \"y\" }\nexpect.bags = {}\n"),
    ]);
    let out = test(&dir).await;
    assert!(!out.status.success(), "must fail");
    let text = out.stdout.join("\n");
    assert!(text.contains("ok      tests/a_good.toml"), "{text}");
    assert!(text.contains("FAILED  tests/b_bad.toml") && text.contains("step 1: the bags `sink` got"), "{text}");
    assert!(text.contains("-     \"text\": \"hi\"") && text.contains("+     \"text\": \"HI\""), "a diff: {text}");
    assert!(text.contains("FAILED  tests/c_silent.toml"), "{text}");
    assert!(text.contains("1 passed, 2 failed"), "{text}");
}

#[tokio::test]
async fn a_malformed_scenario_names_its_file_and_the_problem() {
    let dir = dir_with(&[
        ("typo.toml", "block = \"upper\"\n[[step]]\nenqueu = { text = \"x\" }\n"),
        ("nobody.toml", "block = \"nobody\"\n"),
        ("message.toml", "block = \"upper\"\n[[step]]\nmessage = { subjet = \"x\" }\n"),
        ("logs.toml", "block = \"upper\"\n[[step]]\nenqueue = {}\nexpect.logs = [{ mesage = \"x\" }]\n"),
    ]);
    let out = test(&dir).await;
    assert!(!out.status.success());
    let text = out.stdout.join("\n");
    assert!(text.contains("typo.toml") && text.contains("unknown field `enqueu`"), "{text}");
    assert!(text.contains("the manifest has no block `nobody`"), "{text}");
    assert!(text.contains("message.toml") && text.contains("unknown field `subjet`"), "{text}");
    assert!(text.contains("logs.toml") && text.contains("unknown field `mesage`"), "{text}");
}

#[tokio::test]
async fn every_kind_of_step_drives_the_block() {
    let manifest = r#"
[[block]]
name = "echo"
listen = ["tcp://127.0.0.1:0", "udp://127.0.0.1:0"]

[[block]]
name = "ticker"

[[block]]
name = "caller"
[block.config]
quiet = true

[[block]]
name = "courier"
publish = ["out.>"]
subscribe = ["in.>"]
[block.config]
subscribe = ["in.>"]
forward = "out.fwd"
"#;
    let dir = BlockDir::from_manifest(manifest);
    std::fs::create_dir(dir.path().join("tests")).expect("tests dir");
    let scenarios = [
        (
            "echo.toml",
            r#"
block = "echo"
[[step]]
connect = "tcp"
[[step]]
send = "hello\n"
expect.received = "hello\n"
expect.printed = ['"event":"data"']
[[step]]
close = true
expect.printed = ['"event":"close"']
[[step]]
datagram = "ping"
expect.printed = ['"event":"datagram"']
"#,
        ),
        (
            "ticker.toml",
            r#"
block = "ticker"
[[step]]
advance_ms = 10
expect.printed = ['"tag":"a"']
[[step]]
advance_ms = 25
expect.printed = ['"tag":"b"', '"tag":"c"']
"#,
        ),
        (
            "caller.toml",
            r#"
block = "caller"
[[step]]
call = { do = "answer", n = 3 }
expect.answer = { echo = { n = 3 } }
[[step]]
call = { do = "refuse" }
expect.failure = { error = "refused", why = "on purpose" }
[[step]]
call = { do = "trap" }
expect.failure = { error = "faulted" }
expect.faults = 1
"#,
        ),
        (
            "courier.toml",
            r#"
block = "courier"
server = true
[[step]]
message = { subject = "in.a", payload = { k = 1 } }
expect.printed = ['"__subject":"in.a"']
expect.published = [{ subject = "out.fwd", payload = { k = 1 } }]
"#,
        ),
    ];
    for (name, text) in scenarios {
        dir.write(&format!("tests/{name}"), text.as_bytes());
    }
    let out = test(&dir).await;
    let text = out.stdout.join("\n");
    assert!(out.status.success(), "{text}\n{}", out.stderr);
    assert!(text.contains("4 passed, 0 failed"), "{text}");
}
