//! Manifest checks: what is read, and how every error names file, line and key.
use std::time::Duration;

use super::*;

/// Parses `text` as `dir/bagpipe.toml` with empty component files `a.wasm` and `b.wasm`.
fn parse(text: &str) -> Result<Manifest, ManifestError> {
    let dir = std::env::temp_dir().join(format!("bagpipe-manifest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["a.wasm", "b.wasm"] {
        std::fs::write(dir.join(f), b"").unwrap();
    }
    Manifest::parse(&dir.join("bagpipe.toml"), text)
}

fn check_err(text: &str, line: Option<usize>, key: Option<&str>, needle: &str) {
    let err = parse(text).expect_err("manifest should be refused");
    assert_eq!(err.line, line, "{err}");
    assert_eq!(err.key.as_deref(), key, "{err}");
    assert!(err.message.contains(needle), "{err} should mention {needle:?}");
    assert!(err.to_string().contains("bagpipe.toml"), "{err} should name the file");
}

#[test]
fn reads_blocks_in_order_with_defaults_and_config() {
    let m = parse(
        "[host]\nenqueue_timeout_ms = 20\n\n[[block]]\nname = \"a\"\nqueue = 8\n[block.config]\nx = 1\nwhen = 1979-05-27\n\n[[block]]\nname = \"a\"\nresponsibility = \"a2\"\n",
    )
    .unwrap();
    assert_eq!(m.settings.enqueue_timeout, Duration::from_millis(20));
    let names: Vec<_> = m.blocks.iter().map(|b| (b.name.as_str(), b.responsibility.as_str(), b.line)).collect();
    assert_eq!(names, [("a", "a", 4), ("a", "a2", 11)]);
    assert_eq!(m.blocks[0].limits.queue, 8);
    assert_eq!(m.blocks[1].limits, Limits::default());
    assert!(m.blocks[0].listen.is_empty() && m.blocks[0].connect.is_empty(), "no grants unless given");
    assert_eq!(
        serde_json::Value::Object(m.blocks[0].config.clone()),
        serde_json::json!({"x": 1, "when": "1979-05-27"})
    );
    assert!(m.blocks[1].config.is_empty());
}

#[test]
fn names_file_line_and_key_of_errors() {
    check_err("[[block]]\nname = \"a\"\nqeue = 3\n", Some(3), Some("qeue"), "unknown field");
    check_err("[[block]]\nname = \"a\"\nqueue = \"many\"\n", Some(3), Some("queue"), "invalid type");
    check_err("[[block]]\nname = \"a\"\nqueue = 0\n", Some(3), Some("queue"), "out of range");
    check_err("[[block]]\nname = \"missing\"\n", Some(2), Some("name"), "does not exist");
    check_err("[[block]]\nname = \"../a\"\n", Some(2), Some("name"), "not a component name");
    check_err(
        "[[block]]\nname = \"a\"\nresponsibility = \"initiator\"\n",
        Some(3),
        Some("responsibility"),
        "built into",
    );
    check_err("[[block]]\nname = \"a\"\n[[block]]\nname = \"a\"\n", Some(3), Some("responsibility"), "line 1");
    check_err("[[block]]\nname = \"a\"\nname = \"b\"\n", Some(3), Some("name"), "duplicate key");
    check_err("[[block]]\nresponsibility = \"x\"\n", Some(1), None, "missing field `name`");
    check_err("", None, None, "no blocks");
    check_err("[[block]]\nname = \"a\"\nlisten = [\"http://x\"]\n", Some(3), Some("listen"), "not tcp://");
    check_err("[[block]]\nname = \"a\"\nlisten = [\"tcp://nowhere:1\"]\n", Some(3), Some("listen"), "not an IP:PORT");
    check_err("[[block]]\nname = \"a\"\nconnect = [\"justahost\"]\n", Some(3), Some("connect"), "HOST:PORT");
    check_err(
        "[host]\ndurable_ack_wait_ms = 10\n[[block]]\nname = \"a\"\n",
        Some(2),
        Some("durable_ack_wait_ms"),
        "out of range",
    );
    check_err(
        "[[block]]\nname = \"a\"\nqueue_bytes = 2048\n",
        Some(3),
        Some("queue_bytes"),
        "smaller than max_bag_bytes",
    );
    check_err(
        "[[block]]\nname = \"a\"\nmax_bag_bytes = 40000000\n",
        Some(3),
        Some("max_bag_bytes"),
        "could never be queued",
    );
    check_err("[[block]]\nname = \"a\"\ncontrol = [\"nobody\"]\n", Some(1), Some("control"), "no block has that");
    check_err("[[block]\n", Some(1), None, "");
}

/// Found by `just fuzz` (`fuzz/fuzz_targets/manifest.rs`): an error at the end of the text, as
/// for an unterminated string, named the line after the last one.
#[test]
fn an_error_at_the_end_names_the_last_line() {
    check_err("[host]\nserver = \"\"\"nats\n\n[[block]]\nname = \"a\"\n", Some(5), None, "multi-line basic string");
}

#[test]
fn a_reloaded_entry_keeps_the_routing_the_block_was_started_with() {
    let host = "[host]\nserver = \"nats://127.0.0.1:4222\"\ncluster = \"c\"\n";
    let running =
        parse(&format!("{host}[[block]]\nname = \"a\"\nshared = true\nconnect = [\"127.0.0.1:9\"]\n")).unwrap();
    let edited =
        parse(&format!("{host}[[block]]\nname = \"a\"\nconnect = [\"127.0.0.1:10\"]\n[block.config]\nx = 2\n"))
            .unwrap();
    let (kept, changed) = edited.blocks[0].keeping_routing_of(&running.blocks[0]);
    assert!(changed);
    assert!(kept.shared, "the routing in force stays");
    assert_eq!(kept.connect, ["127.0.0.1:10"], "grants are the edit's");
    assert_eq!(kept.config, edited.blocks[0].config, "everything else is the edit");
    let (same, changed) = running.blocks[0].keeping_routing_of(&running.blocks[0]);
    assert!(!changed);
    assert_eq!(same, running.blocks[0]);
}

#[test]
fn reads_where_the_outbox_keeps_messages_and_the_state_directory() {
    let m =
        parse("[host]\nstate_dir = \"state\"\n[[block]]\nname = \"a\"\noutbox = \"disk\"\n[[block]]\nname = \"b\"\n")
            .unwrap();
    assert_eq!(m.blocks[0].outbox, OutboxMode::Disk);
    assert_eq!(m.blocks[1].outbox, OutboxMode::Memory, "memory unless asked");
    assert_eq!(m.settings.state_dir, Some(m.dir.join("state")), "relative to the manifest");
    assert_eq!(m.settings.state_dir(), Some(m.dir.join("state")), "the manifest's wins");
    check_err("[[block]]\nname = \"a\"\noutbox = \"tape\"\n", Some(3), Some("outbox"), "unknown variant");
    check_err("[host]\nstate_dir = \"\"\n[[block]]\nname = \"a\"\n", Some(2), Some("state_dir"), "empty");
    // Changing it applies when the host restarts, like the rest of the routing.
    let edited = parse("[[block]]\nname = \"a\"\noutbox = \"memory\"\n").unwrap();
    let (kept, changed) = edited.blocks[0].keeping_routing_of(&m.blocks[0]);
    assert!(changed);
    assert_eq!(kept.outbox, OutboxMode::Disk);
}

#[test]
fn publish_to_stream_is_all_none_or_the_subjects_listed() {
    let m = parse(
        "[[block]]\nname = \"a\"\npublish = [\"logs.>\", \"audit.>\"]\npublish_to_stream = [\"audit.>\"]\n\
         [[block]]\nname = \"b\"\npublish_to_stream = true\n[[block]]\nname = \"b\"\nresponsibility = \"c\"\n",
    )
    .unwrap();
    let a = &m.blocks[0].publish_to_stream;
    assert!(a.covers("audit.login") && !a.covers("logs.app"), "{a:?}");
    assert_eq!(m.blocks[1].publish_to_stream, ToStream::All);
    assert_eq!(m.blocks[2].publish_to_stream, ToStream::None, "none unless asked");
    let with = |value: &str| format!("[[block]]\nname = \"a\"\npublish = [\"logs.>\"]\npublish_to_stream = {value}\n");
    check_err(&with("[\"audit.>\"]"), Some(4), Some("publish_to_stream"), "not within the block's `publish` grants");
    check_err(&with("[\"logs..x\"]"), Some(4), Some("publish_to_stream"), "is not a subject");
    check_err(&with("\"yes\""), Some(4), Some("publish_to_stream"), "expected true, false or a list of subjects");
    check_err(&with("[1]"), Some(4), Some("publish_to_stream"), "found `1` in it");
}

mod props {
    //! Whatever a manifest says, reading it never panics, and a refusal names the file and a line
    //! and key that are really in it.
    use proptest::prelude::*;

    use super::parse;

    /// Keys a block entry may have (and a few it may not), with values of any kind.
    fn entry() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("queue"),
            Just("queue_bytes"),
            Just("memory_mb"),
            Just("call_timeout_ms"),
            Just("max_bag_bytes"),
            Just("max_bag_depth"),
            Just("max_timers"),
            Just("max_subscriptions"),
            Just("send_buffer_bytes"),
            Just("log_lines_per_sec"),
            Just("stdout_bytes_per_sec"),
            Just("stderr_bytes_per_sec"),
            Just("outbox_bytes"),
            Just("publish_to_stream"),
            Just("outbox"),
            Just("restart"),
            Just("max_restarts"),
            Just("backoff_ms"),
            Just("after"),
            Just("listen"),
            Just("connect"),
            Just("publish"),
            Just("control"),
            Just("responsibility"),
            Just("qeue"),
        ];
        let value = prop_oneof![
            (0u64..100_000_000).prop_map(|n| n.to_string()),
            "[ -~&&[^\"\\\\]]{0,12}".prop_map(|s| format!("\"{s}\"")),
            any::<bool>().prop_map(|b| b.to_string()),
            prop::collection::vec("[a-z0-9:./*>]{0,10}", 0..3)
                .prop_map(|v| format!("[{}]", v.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", "))),
        ];
        prop::collection::vec((key, value), 0..5)
            .prop_map(|pairs| pairs.into_iter().map(|(k, v)| format!("{k} = {v}\n")).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn a_refusal_names_the_file_and_a_line_and_key_in_it(
            first in entry(),
            second in entry(),
            name in prop_oneof![Just("a"), Just("b"), Just("missing"), Just("../a")],
        ) {
            let text = format!("[[block]]\nname = \"{name}\"\n{first}\n[[block]]\nname = \"b\"\nresponsibility = \"two\"\n{second}");
            if let Err(e) = parse(&text) {
                prop_assert!(e.to_string().contains("bagpipe.toml"), "{e}");
                if let Some(line) = e.line {
                    prop_assert!((1..=text.lines().count()).contains(&line), "{e}: line {line}");
                }
                if let Some(key) = &e.key {
                    prop_assert!(text.contains(key.as_str()), "{e}: key {key}");
                }
            }
        }

        #[test]
        fn any_text_is_read_without_panicking(text in "\\PC{0,300}") {
            let _ = parse(&text);
        }
    }
}

#[test]
fn reads_topic_grants_and_subscriptions() {
    let m = parse(
        "[[block]]\nname = \"a\"\nemit = [\"orders.>\"]\ntopics = [\"orders.*\", { topic = \"ticks\", lossy = true }]\nsubscribe_topics = [\"audit.>\"]\n",
    )
    .unwrap();
    let t = &m.blocks[0].topics;
    assert_eq!(t.emit, ["orders.>"]);
    assert_eq!(t.subscribe, ["audit.>"]);
    assert_eq!(
        t.topics,
        [TopicSub { pattern: "orders.*".into(), lossy: false }, TopicSub { pattern: "ticks".into(), lossy: true }]
    );
    assert_eq!(
        parse("[[block]]\nname = \"a\"\n").unwrap().blocks[0].topics,
        TopicGrants::default(),
        "none unless granted"
    );
}

#[test]
fn bad_topics_name_their_line_and_key() {
    check_err("[[block]]\nname = \"a\"\ntopics = [\"a..b\"]\n", Some(3), Some("topics"), "is not a topic");
    check_err(
        "[[block]]\nname = \"a\"\ntopics = [{ topic = \"a\", fast = true }]\n",
        Some(3),
        Some("topics"),
        "unknown key `fast`",
    );
    check_err("[[block]]\nname = \"a\"\ntopics = [\"a\", \"a\"]\n", Some(3), Some("topics"), "listed twice");
    check_err("[[block]]\nname = \"a\"\n\nemit = [\"a.>.b\"]\n", Some(4), Some("emit"), "is not a topic");
    check_err(
        "[[block]]\nname = \"a\"\nsubscribe_topics = [\"\"]\n",
        Some(3),
        Some("subscribe_topics"),
        "is not a topic",
    );
}

#[test]
fn bridged_topics_are_patterns() {
    let m = parse("[host]\nbridge_topics = [\"orders.>\"]\n\n[[block]]\nname = \"a\"\n").unwrap();
    assert_eq!(m.settings.bridge_topics, ["orders.>"]);
    check_err("[host]\nbridge_topics = [\"a b\"]\n", Some(2), Some("bridge_topics"), "is not a topic");
}

#[test]
fn reads_a_worker_pool_and_its_partition() {
    let m = parse(
        "[[block]]\nname = \"a\"\nworkers = { min = 2, max = 4, idle_ms = 500, scale_ms = 20 }\npartition = \"__from\"\n\n\
         [[block]]\nname = \"b\"\nworkers = { max = 3 }\n\n[[block]]\nname = \"a\"\nresponsibility = \"a2\"\nworkers = { min = 2 }\n",
    )
    .unwrap();
    let w = &m.blocks[0].workers;
    assert_eq!((w.min, w.max, w.idle, w.scale_after), (2, 4, Duration::from_millis(500), Duration::from_millis(20)));
    assert_eq!(m.blocks[0].partition.as_deref(), Some("__from"));
    assert_eq!((m.blocks[1].workers.min, m.blocks[1].workers.max), (1, 3), "max alone: start one, grow to max");
    assert_eq!((m.blocks[2].workers.min, m.blocks[2].workers.max), (2, 2), "min alone: that many");
    assert!(!parse("[[block]]\nname = \"a\"\n").unwrap().blocks[0].workers.pooled(), "one worker by default");
}

#[test]
fn bad_worker_pools_name_their_line_and_key() {
    check_err(
        "[[block]]\nname = \"a\"\nworkers = { min = 3, max = 2 }\n",
        Some(3),
        Some("workers.max"),
        "smaller than",
    );
    check_err("[[block]]\nname = \"a\"\nworkers = { max = 65 }\n", Some(3), Some("workers.max"), "out of range");
    check_err("[[block]]\nname = \"a\"\nworkers = { min = 0 }\n", Some(3), Some("workers.min"), "out of range");
    check_err("[[block]]\nname = \"a\"\nworkers = { most = 2 }\n", Some(3), Some("workers"), "unknown field");
    check_err("[[block]]\nname = \"a\"\npartition = \"k\"\n", Some(3), Some("partition"), "needs `workers`");
    check_err(
        "[[block]]\nname = \"a\"\nworkers = { max = 2 }\npartition = \"\"\n",
        Some(4),
        Some("partition"),
        "1 to 128",
    );
}

#[test]
fn log_publishing_reads_its_keys_and_names_what_is_wrong() {
    let m = parse(
        "[host]\nserver = \"nats://127.0.0.1:4222\"\nlog_subject = \"logs.{hostname}.x\"\nlog_level = \"debug\"\nlog_lines_per_sec = 7\n\n[[block]]\nname = \"a\"\n",
    )
    .unwrap();
    let logs = m.settings.logs.expect("log publishing");
    assert!(logs.subject.starts_with("logs.") && logs.subject.ends_with(".x") && !logs.subject.contains('{'));
    assert_eq!(logs.subject.split('.').count(), 3, "the host name is one token: {}", logs.subject);
    assert_eq!((logs.level, logs.lines_per_sec), (tracing::Level::DEBUG, 7));
    let m = parse("[host]\nlog_subject = \"logs\"\n\n[[block]]\nname = \"a\"\n").unwrap();
    let logs = m.settings.logs.expect("log publishing");
    assert_eq!((logs.level, logs.lines_per_sec), (tracing::Level::INFO, crate::defaults::LOG_PUBLISH_PER_BLOCK));
    assert_eq!(parse("[[block]]\nname = \"a\"\n").unwrap().settings.logs, None);
    check_err("[host]\nlog_subject = \"logs.>\"\n", Some(2), Some("log_subject"), "not a subject to publish to");
    check_err("[host]\nlog_subject = \"logs\"\nlog_level = \"loud\"\n", Some(3), Some("log_level"), "not a level");
    check_err("[host]\nlog_level = \"info\"\n", Some(2), Some("log_level"), "needs log_subject");
    check_err("[host]\nlog_lines_per_sec = 5\n", Some(2), Some("log_lines_per_sec"), "needs log_subject");
    check_err("[host]\nlog_subject = \"l\"\nlog_lines_per_sec = 0\n", Some(3), Some("log_lines_per_sec"), "");
}
