//! The live view's data through the real binary: `/events` streams the host's events as
//! server-sent events (the kept ones first, then each as it comes, resumed after
//! `Last-Event-ID` or `?after=N`); the page at `/` loads nothing from elsewhere; `/host` and
//! `/blocks` say what the page shows; with `[host] log_subject` the host's and its blocks' log
//! lines reach the server, tagged with block and level, each block within its own rate, the rest
//! counted; `--log-format json` makes every log line a JSON object.

use bagpipe_test_support::{Bagpipe, BlockDir, Nats, SAFETY, within};
use futures_util::StreamExt as _;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// An `/events` reader: the events as they come, each `(id, data)`.
struct Events {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
    last_id: String,
}

impl Events {
    async fn open(addr: &str, last_event_id: Option<&str>) -> Self {
        Self::open_at(addr, "/events", last_event_id).await
    }

    async fn open_at(addr: &str, path: &str, last_event_id: Option<&str>) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the admin endpoint");
        let resume = last_event_id.map(|id| format!("last-event-id: {id}\r\n")).unwrap_or_default();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n{resume}\r\n").as_bytes(),
            )
            .await
            .expect("send the request");
        let mut lines = BufReader::new(stream).lines();
        let status = lines.next_line().await.expect("read").expect("a status line");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut event_stream = false;
        while let Some(header) = lines.next_line().await.expect("read") {
            if header.is_empty() {
                break;
            }
            event_stream |= header.eq_ignore_ascii_case("content-type: text/event-stream");
        }
        assert!(event_stream, "served as text/event-stream");
        Self { lines, last_id: String::new() }
    }

    /// The next event with an id (comments, `retry` and chunk sizes skipped): its number and
    /// its data; the id as sent is kept in `last_id`.
    async fn next(&mut self) -> (u64, Value) {
        let (mut id, mut data) = (None, None);
        loop {
            let line = self.lines.next_line().await.expect("read").expect("the stream went on");
            if let Some(text) = line.strip_prefix("id: ") {
                // RUN-SEQ: the host's run, then the event's number in it.
                let (run, seq) = text.split_once('-').unwrap_or_else(|| panic!("an id of a run: {text}"));
                assert!(run.parse::<u64>().is_ok(), "{text}");
                self.last_id = text.to_owned();
                id = seq.parse().ok();
            } else if let Some(json) = line.strip_prefix("data: ") {
                data = Some(serde_json::from_str::<Value>(json).unwrap_or_else(|e| panic!("{json}: {e}")));
            } else if line.is_empty()
                && let (Some(id), Some(data)) = (id.take(), data.take())
            {
                return (id, data);
            }
        }
    }

    /// Reads events until one of `kind` about `block`; returns every event read, in order.
    async fn until(&mut self, kind: &str, block: &str) -> Vec<(u64, Value)> {
        let mut seen = Vec::new();
        within(async {
            loop {
                let event = self.next().await;
                let found = event.1["kind"] == kind && event.1["block"] == block;
                seen.push(event);
                if found {
                    return;
                }
            }
        })
        .await;
        seen
    }
}

async fn get_json(addr: &str, path: &str) -> Value {
    let body = bagpipe::admin_get(addr, path).await.unwrap_or_else(|e| panic!("GET {path}: {e:#}"));
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} is not JSON: {e}\n{body}"))
}

/// `GET path` on a connection of its own: the head and the body.
async fn get_raw(addr: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the admin endpoint");
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut answer = String::new();
    within(tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut answer)).await.expect("read the answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_owned(), body.to_owned())
}

#[tokio::test]
async fn events_stream_in_order_and_resume_after_the_last_event_id() {
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"recorder\"\nafter = []\nqueue = 77\n\n\
         [[block]]\nname = \"faulty\"\nafter = []\nmax_attempts = 1\n[block.config]\nfault = \"panic\"\nin = \"marked\"\n\n\
         [[block]]\nname = \"sender\"\nresponsibility = \"crasher\"\nafter = [\"faulty\", \"recorder\"]\n[block.config]\nto = \"faulty\"\nbags = ['{\"crash\":true}', '{\"fine\":true}']\n",
    );
    let mut host = Bagpipe::run_with(BIN, &dir, &["--admin", "127.0.0.1:0"]);
    let addr = host.admin_addr().await;
    let mut events = Events::open(&addr, None).await;
    let seen = events.until("fault", "faulty").await;
    // From the first event kept, numbered one after another, each with its time and level.
    let ids: Vec<u64> = seen.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>(), "{seen:?}");
    for (id, event) in &seen {
        assert_eq!(event["seq"], *id);
        assert!(event["at_ms"].as_u64().is_some_and(|t| t > 0) && event["level"].is_string(), "{event}");
    }
    let (fault_id, fault) = seen.last().cloned().expect("the fault");
    let fault_event_id = events.last_id.clone();
    assert_eq!(fault["level"], "ERROR", "{fault}");
    assert!(
        fault["message"].as_str().is_some_and(|m| m.starts_with("block faulted: ")),
        "the fault says what: {fault}"
    );
    assert!(
        seen.iter().any(|(_, e)| e["kind"] == "admin" && e["block"].is_null()),
        "the host's own events are there too: {seen:?}"
    );
    // Then live: the dead letter and the restart that follow the fault.
    let after = events.until("restarted", "faulty").await;
    assert!(after.iter().any(|(_, e)| e["kind"] == "dead_letter" && e["block"] == "faulty"), "{after:?}");
    assert_eq!(after.first().map(|(id, _)| *id), Some(fault_id + 1), "nothing skipped: {after:?}");

    // A reader that comes back with the fault's id gets what came after it, first.
    let mut resumed = Events::open(&addr, Some(&fault_event_id)).await;
    let (first, _) = resumed.next().await;
    assert_eq!(first, fault_id + 1);
    // One that comes with an id of another run of the host (it restarted) gets every event kept.
    let mut other_run = Events::open(&addr, Some(&format!("1-{fault_id}"))).await;
    assert_eq!(other_run.next().await.0, 1, "an id of another run counts as none");
    // A tool without the header asks with `?after=N`.
    let mut after = Events::open_at(&addr, &format!("/events?after={fault_id}"), None).await;
    assert_eq!(after.next().await.0, fault_id + 1);

    // The page: one file that loads nothing from elsewhere, and says so to the browser.
    let (head, page) = get_raw(&addr, "/").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let csp =
        head.lines().find_map(|h| h.to_ascii_lowercase().strip_prefix("content-security-policy: ").map(str::to_owned));
    assert!(csp.as_deref().is_some_and(|p| p.starts_with("default-src 'none'")), "{head}");
    for outside in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
        assert!(!page.contains(outside), "the page refers to `{outside}`");
    }

    // What the page's rows come from.
    let blocks = get_json(&addr, "/blocks").await;
    let block = |name: &str| {
        blocks.as_array().and_then(|b| b.iter().find(|b| b["responsibility"] == name)).cloned().expect(name)
    };
    assert_eq!(block("recorder")["queue_capacity"], 77);
    // Counted as it happened, then logged.
    let fault_at = fault["at_ms"].as_u64().unwrap_or(0);
    let counted_at = block("faulty")["last_fault_at_ms"].as_u64();
    assert!(counted_at.is_some_and(|t| t > 0 && t <= fault_at), "{counted_at:?} against {fault}");
    assert!(block("recorder")["last_fault_at_ms"].is_null());
    let about = get_json(&addr, "/host").await;
    assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(about["blocks"], 3);
    assert!(about["uptime_ms"].as_u64().is_some() && about["server"].is_null() && about["logs"].is_null(), "{about}");

    host.signal(libc::SIGTERM);
    // The streams end with the host: reading on ends, it does not hang.
    within(async { while events.lines.next_line().await.ok().flatten().is_some() {} }).await;
    host.finish().await.assert_success();
}

#[tokio::test]
async fn log_lines_reach_the_server_subject_tagged_and_each_block_within_its_rate() {
    let nats = Nats::start(false).await;
    let client = async_nats::connect(nats.url()).await.expect("connect to NATS");
    let mut lines = client.subscribe("bagpipe.logs.test").await.expect("subscribe");
    client.flush().await.expect("flush");
    // `loud` logs 2,000 lines in one go; `quiet` logs 3. Each may publish 20 a second. `broken`
    // fails to start (it is optional): what start-up says goes too.
    let dir = BlockDir::from_manifest(&format!(
        "[host]\nserver = \"{}\"\nlog_subject = \"bagpipe.logs.test\"\nlog_lines_per_sec = 20\n\n\
         [[block]]\nname = \"hostile\"\nresponsibility = \"loud\"\nafter = []\nlog_lines_per_sec = 1000000\n[block.config]\ntry = \"log_flood\"\ncount = 2000\n\n\
         [[block]]\nname = \"hostile\"\nresponsibility = \"quiet\"\nafter = []\n[block.config]\ntry = \"log_flood\"\ncount = 3\n\n\
         [[block]]\nname = \"faulty\"\nresponsibility = \"broken\"\nafter = []\nrequired = false\ninit_retries = 0\n[block.config]\nfault = \"panic\"\nin = \"init\"\n",
        nats.url()
    ));
    let mut host = Bagpipe::run_with(BIN, &dir, &["--admin", "127.0.0.1:0"]);
    let addr = host.admin_addr().await;
    host.wait_for(2, |e| e["event"] == "logged").await;
    let about = get_json(&addr, "/host").await;
    assert_eq!(about["logs"]["subject"], "bagpipe.logs.test", "{about}");
    // The page's server rows: where, connected, no reconnects yet.
    assert_eq!(about["server"]["url"], nats.url(), "{about}");
    assert_eq!(about["server"]["state"], "connected", "{about}");
    assert_eq!(about["server"]["reconnects"], 0, "{about}");
    host.signal(libc::SIGTERM);
    host.finish().await.assert_success();
    // The host flushed what it published before it closed; this marker comes after all of it.
    client.publish("bagpipe.logs.test", "end".into()).await.expect("publish the marker");
    let mut got: Vec<Value> = Vec::new();
    tokio::time::timeout(SAFETY, async {
        while let Some(message) = lines.next().await {
            if &message.payload[..] == b"end" {
                return;
            }
            let text = String::from_utf8_lossy(&message.payload).into_owned();
            got.push(serde_json::from_str(&text).unwrap_or_else(|e| panic!("not a JSON line: {text}: {e}")));
        }
    })
    .await
    .expect("the marker came back");
    let of = |block: &str| got.iter().filter(|l| l["block"] == block).collect::<Vec<_>>();
    let quiet: Vec<_> = of("quiet").iter().filter_map(|l| l["message"].as_str().map(str::to_owned)).collect();
    for i in 0..3 {
        let line = format!("flooding the log, line {i}");
        assert!(quiet.contains(&line), "`quiet` is not held back by `loud`: {line} missing from {quiet:?}");
    }
    let loud = of("loud");
    let flooded = loud.iter().filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with("flooding"))).count();
    assert!(flooded > 0, "some of `loud`'s lines went");
    // 2,000 lines in far less than the 99 s that 20 a second would need.
    assert!(flooded < 200, "`loud` was held to its rate: {flooded} lines published");
    assert!(loud.iter().all(|l| l["level"] == "INFO" && l["timestamp"].is_string()), "{loud:?}");
    assert!(
        got.iter().any(|l| l["block"].is_null() && l["event"] == "running"),
        "the host's own lines go too: {got:?}"
    );
    assert!(
        got.iter().any(|l| l["block"] == "broken" && l["event"] == "left_out" && l["level"] == "WARN"),
        "what the blocks' start says is published: {got:?}"
    );
    // What was not published was counted.
    let dropped = about["logs"]["dropped"].as_u64().unwrap_or(0);
    assert!(dropped >= 2000 - 200, "dropped lines are counted: {about}");
}

#[tokio::test]
async fn the_log_format_flag_makes_every_log_line_a_json_object() {
    // A source of one bag into a sink that shuts the host down when it has it.
    let dir = BlockDir::from_manifest(
        "[[block]]\nname = \"bench_sink\"\nresponsibility = \"sink\"\nafter = []\n\n\
         [[block]]\nname = \"bench_source\"\nresponsibility = \"source\"\nafter = [\"sink\"]\n\
         [block.config]\nto = \"sink\"\ncount = 1\n",
    );
    // The flag alone: the tests' usual BAGPIPE_LOG_FORMAT is not set here.
    let out = within(
        tokio::process::Command::new(BIN)
            .args(["run", dir.path().to_str().expect("a UTF-8 path"), "--no-watch", "--log-format", "json"])
            .env_remove("BAGPIPE_LOG_FORMAT")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run bagpipe");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")))
        .collect();
    for line in &lines {
        assert!(line["timestamp"].is_string() && line["level"].is_string() && line["message"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l["event"] == "running" && l["block"].is_null()), "the host's own lines: {log}");
    assert!(
        lines
            .iter()
            .any(|l| l["block"] == "sink" && l["message"].as_str().is_some_and(|m| m.contains("bench elapsed_ns="))),
        "a block's line, tagged with its block: {log}"
    );
}
