//! Blocks written in Python and JavaScript, built from `examples/polyglot/src/` with the SDKs in
//! `guest-sdk/python` and `guest-sdk/js`, run through the real host next to Rust blocks: a
//! pipeline across the three languages, a Python block that raises, a hot swap of the Python
//! block that carries its state, and the compile cache that makes their second start cheap.

use std::ffi::OsStr;
use std::path::Path;

use bagpipe_test_support::{Bagpipe, BlockDir, Want, Write, artifacts, block_of, polyglot, run_to_end, workspace_root};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// The tests of this file run one at a time, after the shared compile cache holds the example's
/// components: compiling a Python and a JavaScript component takes a debug host tens of seconds,
/// and several hosts doing it at once on a small machine would outlast the waits' safety limit.
/// (The cache test compiles again, into a cache of its own, with nothing else running.)
static ONE_AT_A_TIME: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);

async fn exclusive() -> tokio::sync::MutexGuard<'static, bool> {
    let mut warmed = ONE_AT_A_TIME.lock().await;
    if !*warmed {
        let dir = pipeline(1, 1);
        // `bagpipe check` compiles every component of the directory into the shared cache; it
        // runs without the waits' limit, as long as compiling takes.
        let checked = tokio::process::Command::new(BIN)
            .arg("check")
            .arg(dir.path())
            .env("BAGPIPE_CACHE_DIR", workspace_root().join("target").join("bagpipe-test-cache"))
            .output()
            .await
            .expect("running bagpipe check");
        assert!(checked.status.success(), "bagpipe check: {}", String::from_utf8_lossy(&checked.stderr));
        *warmed = true;
    }
    warmed
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// source (Rust) -> enrich (Python) -> tag (JavaScript) -> sink (Rust), the example's manifest
/// with its source's count and pace changed.
fn pipeline(count: u64, interval_ms: u64) -> BlockDir {
    let manifest = std::fs::read_to_string(workspace_root().join("examples/polyglot/bagpipe.toml"))
        .expect("the example's manifest")
        .replace("count = 10\ninterval_ms = 50", &format!("count = {count}\ninterval_ms = {interval_ms}"));
    assert!(manifest.contains(&format!("count = {count}\n")), "the example's manifest changed shape");
    let dir = BlockDir::new(&manifest, &[("source", artifacts::SOURCE), ("sink", artifacts::SINK)]);
    dir.copy("enrich", path_str(&polyglot::enrich()));
    dir.copy("tag", path_str(&polyglot::tag()));
    dir
}

/// The sink's bags: what it printed that has an `n`.
fn sunk(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e.get("n").is_some()).collect()
}

#[tokio::test]
async fn rust_python_javascript_rust_delivers_every_bag_in_order() {
    let _one = exclusive().await;
    let dir = pipeline(200, 1);
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();
    let bags = sunk(&out.events);
    assert_eq!(bags.len(), 200, "every bag arrives:\n{}", out.stderr);
    for (k, bag) in bags.iter().enumerate() {
        let n = k as u64 + 1;
        assert_eq!(bag["n"], n, "in order: {bag}");
        assert_eq!(bag["words"], 3, "enrich (Python) counted the words: {bag}");
        assert_eq!(bag["py_seen"], n, "{bag}");
        assert_eq!(bag["py_version"], 1, "{bag}");
        assert_eq!(bag["js_seen"], n, "tag (JavaScript) saw it: {bag}");
        assert_eq!(bag["tag"], "polyglot", "tag's config reached it: {bag}");
        assert_eq!(bag["__from"], "tag", "{bag}");
        assert_eq!(bag["__seq"], n, "{bag}");
    }
    for block in ["source", "enrich", "tag", "sink"] {
        assert_eq!(out.final_stats(block)["faults"], 0, "{block}:\n{}", out.stderr);
    }
    assert_eq!(out.final_stats("enrich")["processed"], 200);
    assert_eq!(out.final_stats("tag")["processed"], 200);
    let finished: Vec<_> = out.log_events("finished").iter().filter_map(|r| r["block"].as_str()).collect();
    assert_eq!(finished, ["sink", "tag", "enrich", "source"], "finished in reverse order:\n{}", out.stderr);
}

#[tokio::test]
async fn a_python_block_that_raises_ends_only_itself_and_is_restarted() {
    let _one = exclusive().await;
    // `sender` sends three syslog-like bags; the second has a text that is not a string, so
    // enrich's `split` raises AttributeError.
    let bags = [
        r#"{"text":"disk almost full","severity":3,"facility":4}"#,
        r#"{"text":5}"#,
        r#"{"text":"after the fault","severity":6,"facility":16,"last":true}"#,
    ];
    let manifest = format!(
        r#"
[[block]]
name = "sender"
[block.config]
to = "enrich"
phase = "run"
bags = {bags:?}

[[block]]
name = "enrich"
[block.config]
to = "tag"

[[block]]
name = "tag"
[block.config]
to = "sink"

[[block]]
name = "sink"
"#
    );
    let dir = BlockDir::new(&manifest, &[("sender", artifacts::SENDER), ("sink", artifacts::SINK)]);
    dir.copy("enrich", path_str(&polyglot::enrich()));
    dir.copy("tag", path_str(&polyglot::tag()));
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();

    let got: Vec<&Value> = out.events.iter().filter(|e| e.get("words").is_some()).collect();
    assert_eq!(got.len(), 2, "the two good bags arrive, the bad one does not:\n{}", out.stderr);
    assert_eq!(got[0]["severity_name"], "err");
    assert_eq!(got[0]["facility_name"], "auth");
    assert_eq!(got[0]["py_seen"], 1);
    assert_eq!(got[1]["text"], "after the fault");
    assert_eq!(got[1]["severity_name"], "info");
    assert_eq!(got[1]["facility_name"], "local0");
    // A restart is a fresh instance: its count starts again (a swap carries it; see below).
    assert_eq!(got[1]["py_seen"], 1, "{}", got[1]);

    let faults = out.log.iter().filter(|r| r["event"] == "fault" && block_of(r) == Some("enrich")).count();
    assert!(faults >= 1, "enrich faulted:\n{}", out.stderr);
    assert!(out.stderr.contains("AttributeError"), "the Python traceback reaches the log:\n{}", out.stderr);
    assert!(!out.log_events("restarted").is_empty(), "enrich was restarted:\n{}", out.stderr);
    let enrich = out.final_stats("enrich");
    assert!(enrich["faults"].as_u64() >= Some(1) && enrich["restarts"].as_u64() >= Some(1), "{enrich}");
    assert_eq!(enrich["dead_letters"], 1, "the bag that made it raise is dead-lettered, once: {enrich}");
    for block in ["sender", "tag", "sink"] {
        let stats = out.final_stats(block);
        assert_eq!((&stats["faults"], &stats["restarts"]), (&0.into(), &0.into()), "{block} ran on: {stats}");
    }
}

#[tokio::test]
async fn a_hot_swap_of_the_python_block_carries_its_count_and_loses_nothing() {
    let _one = exclusive().await;
    let dir = pipeline(1_000_000, 2);
    let source = std::fs::read_to_string(workspace_root().join("examples/polyglot/src/enrich.py")).expect("enrich.py");
    assert!(source.contains("VERSION = 1\n"), "enrich.py changed shape");
    let v2 = polyglot::block_from_text("enrich.py", &source.replace("VERSION = 1\n", "VERSION = 2\n"));
    let v2 = std::fs::read(v2).expect("enrich v2");

    let mut host = Bagpipe::run(BIN, &dir);
    host.log_event("running").await;
    host.wait_for(20, |e| e["py_version"] == 1).await;
    dir.write_as("enrich.wasm", &v2, Write::Rename);
    let swapped = host.log_record(Want::event("swapped").block("enrich")).await;
    assert_eq!(swapped["version"], bagpipe_test_support::version_of(&v2), "{swapped}");
    host.wait_for(20, |e| e["py_version"] == 2).await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();

    let bags = sunk(&out.events);
    let mut last_version = 1;
    for (k, bag) in bags.iter().enumerate() {
        let n = k as u64 + 1;
        assert_eq!(bag["n"], n, "nothing lost, nothing twice, in order: {bag}");
        assert_eq!(bag["py_seen"], n, "the count went on across the swap: {bag}");
        let version = bag["py_version"].as_u64().expect("a version");
        assert!(version >= last_version, "never back to the old version: {bag}");
        last_version = version;
    }
    assert_eq!(last_version, 2);
    let enrich = out.final_stats("enrich");
    assert_eq!((&enrich["swaps"], &enrich["faults"]), (&1.into(), &0.into()), "{enrich}");
}

#[tokio::test]
async fn the_compile_cache_keeps_a_second_start_from_compiling_python_or_javascript() {
    let _one = exclusive().await;
    let cache = tempfile::tempdir().expect("a cache directory");
    let dir = pipeline(3, 1);
    let args = [OsStr::new("run"), dir.path().as_os_str()];
    let env = [("BAGPIPE_CACHE_DIR", cache.path().as_os_str())];
    let loaded = |out: &bagpipe_test_support::Finished, name: &str| -> String {
        let record = out
            .log
            .iter()
            .find(|r| r["event"] == "component_loaded" && r["path"].as_str().is_some_and(|p| p.ends_with(name)))
            .unwrap_or_else(|| panic!("{name} was not loaded:\n{}", out.stderr));
        record["from"].as_str().expect("from").to_owned()
    };

    let first = Bagpipe::start_env(BIN, args, &env).finish().await;
    first.assert_success();
    assert_eq!(loaded(&first, "enrich.wasm"), "compiled");
    assert_eq!(loaded(&first, "tag.wasm"), "compiled");

    let second = Bagpipe::start_env(BIN, args, &env).finish().await;
    second.assert_success();
    assert_eq!(loaded(&second, "enrich.wasm"), "disk", "read from the cache, not compiled again");
    assert_eq!(loaded(&second, "tag.wasm"), "disk");
    assert_eq!(sunk(&second.events).len(), 3);
}

/// The events one probe printed, by `event`.
fn probe_events<'a>(events: &'a [Value], language: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["probe"] == language).collect()
}

#[tokio::test]
async fn python_and_javascript_controllers_give_the_hosts_answers_and_typed_errors() {
    let _one = exclusive().await;
    // Each probe tries the controller's calls and hooks (guests/python/probe.py,
    // guests/js/probe.js); the sink is the target of their calls (it answers none).
    let manifest = r#"
[[block]]
name = "probe_py"
emit = ["probe.>"]
subscribe_topics = ["probe.>"]
[block.config]
target = "sink"

[[block]]
name = "probe_js"
emit = ["probe.>"]
subscribe_topics = ["probe.>"]
[block.config]
target = "sink"

[[block]]
name = "sink"
"#;
    let dir = BlockDir::new(manifest, &[("sink", artifacts::SINK)]);
    let root = workspace_root();
    dir.copy("probe_py", path_str(&polyglot::block(&root.join("guests/python/probe.py"))));
    dir.copy("probe_js", path_str(&polyglot::block(&root.join("guests/js/probe.js"))));
    let mut host = Bagpipe::run(BIN, &dir);
    host.wait_for(2, |e| e["event"] == "all_done").await;
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();

    for (language, block) in [("python", "probe_py"), ("js", "probe_js")] {
        let events = probe_events(&out.events, language);
        let find = |event: &str| -> Vec<&Value> { events.iter().copied().filter(|e| e["event"] == event).collect() };
        let who = find("who");
        assert_eq!((&who[0]["name"], &who[0]["responsibility"]), (&block.into(), &block.into()), "{language}");
        let error = |call: &str| -> &Value {
            events
                .iter()
                .copied()
                .find(|e| e["event"] == "error" && e["call"] == call)
                .unwrap_or_else(|| panic!("{language}: no error from {call} in {events:?}"))
        };
        assert_eq!(find("error").len(), 5, "{language}: {:?}", find("error"));
        let unknown = error("enqueue_unknown");
        assert_eq!(
            (&unknown["cls"], &unknown["family"], &unknown["kind"]),
            (&"UnknownTarget".into(), &"EnqueueError".into(), &"unknown-target".into()),
            "{language}"
        );
        assert!(unknown["detail"].as_str().is_some_and(|d| d.contains("`nobody`")), "{language}: {unknown}");
        let invalid = error("enqueue_invalid");
        assert_eq!((&invalid["cls"], &invalid["kind"]), (&"InvalidBag".into(), &"invalid-bag".into()), "{language}");
        assert!(invalid["detail"].as_str().is_some_and(|d| d.contains("__x")), "{language}: {invalid}");
        let emit = error("emit");
        assert_eq!(
            (&emit["family"], &emit["kind"]),
            (&"TopicError".into(), &"not-granted".into()),
            "{language}: {emit}"
        );
        let publish = error("publish");
        assert_eq!(
            (&publish["family"], &publish["kind"]),
            (&"ServerError".into(), &"no-server".into()),
            "{language}: {publish}"
        );
        let reply = error("reply");
        assert_eq!(
            (&reply["family"], &reply["kind"]),
            (&"CallError".into(), &"no-reply".into()),
            "{language}: the sink took the call and did not answer"
        );
        assert_eq!(find("emitted")[0]["count"], 1, "{language}: the probe itself is subscribed");
        let topic = find("topic");
        assert_eq!((&topic[0]["topic"], &topic[0]["t"]), (&format!("probe.{block}").into(), &1.into()), "{language}");
        assert_eq!(find("server")[0]["connected"], false, "{language}");
        let sent = find("sent_many");
        assert_eq!(
            (&sent[0]["taken"], &sent[0]["queued"], &sent[0]["error"]),
            (&3.into(), &true.into(), &false.into())
        );
        let lookup = find("lookup");
        assert_eq!(
            (&lookup[0]["state"], &lookup[0]["accepts_bags"], &lookup[0]["builtin"]),
            (&"running".into(), &true.into(), &false.into()),
            "{language}"
        );
        assert_eq!(find("lookup_nobody")[0]["found"], false, "{language}");
        assert_eq!(find("called")[0]["id_is_int"], true, "{language}");
        assert_eq!(find("timer")[0]["tag"], "tick", "{language}");
        let bags: Vec<_> = find("bag").iter().map(|b| (b["i"].clone(), b["sender"].clone())).collect();
        assert_eq!(
            bags,
            [(1.into(), block.into()), (2.into(), block.into())],
            "{language}: the refused bag is not one"
        );
        assert_eq!(find("all_done").len(), 1, "{language}");

        let stats = out.final_stats(block);
        assert_eq!(
            (&stats["failed"], &stats["faults"]),
            (&1.into(), &0.into()),
            "BlockError is a refusal, not a fault: {stats}"
        );
        // Exactly the hooks its class defines are exported (the host reads them from the exports).
        let loaded = out
            .log
            .iter()
            .find(|r| r["message"] == "loaded" && r["block"] == block)
            .unwrap_or_else(|| panic!("no `loaded` record for {block}:\n{}", out.stderr));
        assert_eq!(loaded["hooks"], r#"["on-enqueue", "on-reply", "on-timer"]"#, "{language}: {loaded}");
        let warned = out.log.iter().any(|r| {
            block_of(r) == Some(block)
                && r["level"] == "WARN"
                && r["message"].as_str().is_some_and(|m| m.contains("probe warns"))
        });
        assert!(warned, "{language}: ctl.warn reached the log:\n{}", out.stderr);
    }
}

#[tokio::test]
async fn a_javascript_block_that_throws_or_goes_async_faults_and_one_that_refuses_does_not() {
    let _one = exclusive().await;
    let bags = [r#"{"throw":true}"#, r#"{"async":true}"#, r#"{"refuse":true}"#, r#"{"i":1,"last":true}"#];
    let manifest = format!(
        "[[block]]\nname = \"sender\"\n[block.config]\nto = \"faulty_js\"\nphase = \"run\"\nbags = {bags:?}\n\n\
         [[block]]\nname = \"faulty_js\"\n[block.config]\nto = \"sink\"\n\n[[block]]\nname = \"sink\"\n"
    );
    let dir = BlockDir::new(&manifest, &[("sender", artifacts::SENDER), ("sink", artifacts::SINK)]);
    dir.copy("faulty_js", path_str(&polyglot::block(&workspace_root().join("guests/js/faulty.js"))));
    let out = run_to_end(BIN, ["run".as_ref(), dir.path().as_os_str()]).await;
    out.assert_success();

    let got: Vec<&Value> = out.events.iter().filter(|e| e.get("i").is_some()).collect();
    assert_eq!(got.len(), 1, "only the good bag arrives:\n{}", out.stderr);
    let stats = out.final_stats("faulty_js");
    // Each faulting bag: delivered, delivered again to a fresh instance, then dead-lettered.
    assert_eq!(
        (&stats["faults"], &stats["dead_letters"], &stats["failed"]),
        (&4.into(), &2.into(), &1.into()),
        "two faults twice each, one refusal: {stats}\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("TypeError"), "the JS error reaches the log:\n{}", out.stderr);
    assert!(out.stderr.contains("hooks are synchronous"), "an async hook is named as the fault:\n{}", out.stderr);
    for block in ["sender", "sink"] {
        assert_eq!(out.final_stats(block)["faults"], 0, "{block} ran on");
    }
}

#[tokio::test]
async fn python_and_javascript_blocks_own_sockets_through_the_host() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let _one = exclusive().await;
    let manifest = "[[block]]\nname = \"echo_py\"\nlisten = [\"tcp://127.0.0.1:0\", \"udp://127.0.0.1:0\"]\n\n\
                    [[block]]\nname = \"echo_js\"\nlisten = [\"tcp://127.0.0.1:0\", \"udp://127.0.0.1:0\"]\n";
    let dir = BlockDir::new(manifest, &[]);
    let root = workspace_root();
    dir.copy("echo_py", path_str(&polyglot::block(&root.join("guests/python/echo_py.py"))));
    dir.copy("echo_js", path_str(&polyglot::block(&root.join("guests/js/echo_js.js"))));
    let mut host = Bagpipe::run(BIN, &dir);
    let seen = host.wait_for(2, |e| e["event"] == "listeners").await;

    for language in ["python", "js"] {
        let listeners =
            &seen.iter().find(|e| e["event"] == "listeners" && e["probe"] == language).expect("listeners")["listeners"];
        let addr = |scheme: &str| -> String {
            let url = listeners
                .as_array()
                .and_then(|l| l.iter().filter_map(Value::as_str).find(|u| u.starts_with(scheme)))
                .unwrap_or_else(|| panic!("{language}: no {scheme} listener in {listeners}"));
            url.trim_start_matches(scheme).to_owned()
        };
        let (tcp, udp) = (addr("tcp://"), addr("udp://"));

        let mut conn = BufReader::new(tokio::net::TcpStream::connect(&tcp).await.expect("connect"));
        conn.get_mut().write_all(b"hello\n").await.expect("write");
        let mut back = String::new();
        bagpipe_test_support::within(conn.read_line(&mut back)).await.expect("read");
        assert_eq!(back, "hello\n", "{language} echoed over TCP");
        drop(conn);

        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("udp");
        socket.send_to(b"ping", &udp).await.expect("send datagram");
        let mut buf = [0u8; 64];
        let (n, from) = bagpipe_test_support::within(socket.recv_from(&mut buf)).await.expect("datagram back");
        assert_eq!((&buf[..n], from.to_string()), (&b"ping"[..], udp.clone()), "{language} echoed over UDP");

        // The close and the datagram race each other: wait for both.
        let mut events = Vec::new();
        let wanted =
            |events: &[Value], event: &str| events.iter().any(|e| e["event"] == event && e["probe"] == language);
        while !(wanted(&events, "send_after_close") && wanted(&events, "datagram")) {
            events.extend(host.wait_for(1, |e| e["probe"] == language).await);
        }
        let mine: Vec<&Value> = seen.iter().chain(events.iter()).filter(|e| e["probe"] == language).collect();
        let find = |event: &str| {
            mine.iter()
                .copied()
                .find(|e| e["event"] == event)
                .unwrap_or_else(|| panic!("{language}: no {event} in {mine:?}"))
        };
        let accept = find("accept");
        assert_eq!(
            (&accept["listener"], &accept["listed"]),
            (&format!("tcp://{tcp}").into(), &true.into()),
            "{language}"
        );
        let data = find("data");
        assert_eq!(
            (&data["text"], &data["is_bytes"], &data["conn"]),
            (&"hello\n".into(), &true.into(), &accept["conn"]),
            "{language}"
        );
        assert_eq!(find("close")["conn"], accept["conn"], "{language}");
        assert_eq!(find("send_after_close")["kind"], "unknown-connection", "{language}");
        assert_eq!(find("datagram")["text"], "ping", "{language}");
    }
    host.signal(libc::SIGTERM);
    let out = host.finish().await;
    out.assert_success();
    for block in ["echo_py", "echo_js"] {
        assert_eq!(out.final_stats(block)["faults"], 0, "{block}:\n{}", out.stderr);
    }
}
