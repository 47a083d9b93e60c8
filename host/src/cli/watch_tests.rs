//! `frame()` on samples made by hand: rates, restarts, alignment, pools, the header.

use bagpipe::WorkerSnapshot;

use super::*;

fn block(name: &str, received: u64, sent: u64, processed: u64) -> Block {
    Block {
        responsibility: name.to_owned(),
        state: "running".to_owned(),
        version: "3125dead1085".to_owned(),
        received,
        sent,
        processed,
        ..Block::default()
    }
}

fn sample(t0: Instant, after_ms: u64, blocks: Vec<Block>) -> Sample {
    Sample {
        taken: t0 + Duration::from_millis(after_ms),
        wall_ms: 1_700_000_000_000 + after_ms,
        clock: "12:00:00".to_owned(),
        blocks: Ok(blocks),
        host: None,
    }
}

const VIEW: View<'static> = View { admin: "127.0.0.1:9330", workers: false, width: None };

/// The cell under `column` in the row whose first word is `row`.
fn cell(frame: &str, row: &str, column: &str) -> String {
    let mut lines = frame.lines().skip(1);
    let header = lines.next().expect("table header");
    // Where each column starts: where a word of the header starts.
    let starts: Vec<usize> = header
        .char_indices()
        .filter(|&(i, c)| c != ' ' && (i == 0 || header[..i].ends_with(' ')))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(starts.len(), HEADER.len(), "{header}");
    let col = HEADER.iter().position(|h| *h == column).expect("a column");
    let line = lines.find(|l| l.split_whitespace().next() == Some(row)).unwrap_or_else(|| panic!("{row} in\n{frame}"));
    let end = starts.get(col + 1).copied().unwrap_or(line.len()).min(line.len());
    line.get(starts[col]..end).unwrap_or("").trim().to_owned()
}

#[test]
fn rates_are_the_counters_differences_over_the_time_between_samples() {
    let t0 = Instant::now();
    let mut published = block("relay", 100, 40, 90);
    published.published = 60;
    let a = sample(t0, 0, vec![block("source", 0, 1000, 0), published.clone()]);
    let mut later = published;
    later.received += 50;
    later.sent += 20;
    later.published += 30;
    later.processed += 26;
    let b = sample(t0, 2000, vec![block("source", 0, 1400, 0), later]);
    let text = frame(Some(&a), &b, &VIEW);
    assert_eq!(cell(&text, "source", "OUT/s"), "200", "{text}");
    assert_eq!(cell(&text, "source", "IN/s"), "0", "{text}");
    assert_eq!(cell(&text, "relay", "IN/s"), "25", "{text}");
    assert_eq!(cell(&text, "relay", "OUT/s"), "25", "sent and published: {text}");
    assert_eq!(cell(&text, "relay", "DONE/s"), "13", "{text}");
    assert_eq!(cell(&text, "relay", "DONE"), "116", "{text}");
    // The first frame has nothing to compare with.
    let first = frame(None, &a, &VIEW);
    assert_eq!(cell(&first, "relay", "IN/s"), "-", "{first}");
}

#[test]
fn a_counter_that_went_down_gives_no_rate_rather_than_an_underflow() {
    let t0 = Instant::now();
    let a = sample(t0, 0, vec![block("sink", 500, 0, 500)]);
    let b = sample(t0, 1000, vec![block("sink", 3, 0, 2)]);
    let text = frame(Some(&a), &b, &VIEW);
    assert_eq!(cell(&text, "sink", "IN/s"), "-", "{text}");
    assert_eq!(cell(&text, "sink", "DONE/s"), "-", "{text}");
    assert_eq!(cell(&text, "sink", "DONE"), "2", "{text}");
}

#[test]
fn a_restarted_host_gives_no_rates_even_when_its_counters_caught_up() {
    let t0 = Instant::now();
    let mut a = sample(t0, 0, vec![block("sink", 5, 0, 5)]);
    a.host = Some(HostInfo { started_at_ms: Some(1), ..HostInfo::default() });
    let mut b = sample(t0, 1000, vec![block("sink", 50, 0, 50)]);
    b.host = Some(HostInfo { started_at_ms: Some(2), ..HostInfo::default() });
    assert_eq!(cell(&frame(Some(&a), &b, &VIEW), "sink", "IN/s"), "-");
    b.host = Some(HostInfo { started_at_ms: Some(1), ..HostInfo::default() });
    assert_eq!(cell(&frame(Some(&a), &b, &VIEW), "sink", "IN/s"), "45");
}

#[test]
fn blocks_that_come_and_go_between_samples() {
    let t0 = Instant::now();
    let a = sample(t0, 0, vec![block("old", 10, 0, 10), block("kept", 10, 0, 10)]);
    let b = sample(t0, 500, vec![block("kept", 20, 0, 20), block("new", 7, 0, 7)]);
    let text = frame(Some(&a), &b, &VIEW);
    assert!(!text.lines().any(|l| l.starts_with("old")), "{text}");
    assert_eq!(cell(&text, "kept", "IN/s"), "20", "{text}");
    assert_eq!(cell(&text, "new", "IN/s"), "-", "{text}");
    assert_eq!(cell(&text, "new", "DONE"), "7", "{text}");
    assert!(text.lines().next().is_some_and(|h| h.contains("2 blocks")), "{text}");
}

#[test]
fn columns_line_up_and_lines_end_without_spaces() {
    let t0 = Instant::now();
    let mut long = block("a-rather-long-responsibility", 123_456, 0, 123_456);
    long.queue_depth = 17;
    long.queue_capacity = Some(1024);
    long.last_fault_at_ms = Some(1_700_000_000_000 - 65_000);
    let a = sample(t0, 0, vec![block("x", 0, 0, 0), long.clone()]);
    long.received += 30_000;
    let b = sample(t0, 1000, vec![block("x", 0, 0, 0), long]);
    let text = frame(Some(&a), &b, &VIEW);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    for l in &lines {
        assert_eq!(l.trim_end(), *l, "no trailing spaces: {l:?}");
    }
    // Each column starts at the same place in the header and every row.
    let header = lines[1];
    for name in ["STATE", "IN/s", "QUEUE", "FAULTED", "WORKERS"] {
        let at = header.find(name).expect("column");
        for row in &lines[2..] {
            assert_eq!(row.chars().nth(at - 1), Some(' '), "{name} in\n{text}");
            assert_ne!(row.chars().nth(at), Some(' '), "{name} in\n{text}");
        }
    }
    assert_eq!(cell(&text, "a-rather-long-responsibility", "QUEUE"), "17/1024", "{text}");
    assert_eq!(cell(&text, "a-rather-long-responsibility", "IN/s"), "30.0k", "{text}");
    assert_eq!(cell(&text, "a-rather-long-responsibility", "FAULTED"), "1m06s ago", "{text}");
    assert_eq!(cell(&text, "x", "QUEUE"), "0", "no capacity said: the depth alone\n{text}");
    assert_eq!(cell(&text, "x", "SWAPPED"), "-", "{text}");
    // A narrow terminal cuts the lines.
    let narrow = frame(Some(&a), &b, &View { width: Some(20), ..VIEW });
    assert!(narrow.lines().all(|l| l.chars().count() <= 20), "{narrow}");
    assert_eq!(narrow.lines().count(), 4, "{narrow}");
}

#[test]
fn a_pools_workers_have_rows_of_their_own_with_what_each_was_handed_a_second() {
    let t0 = Instant::now();
    let worker = |id, handed, in_flight| WorkerSnapshot {
        id,
        state: "running".to_owned(),
        version: "v1".to_owned(),
        handed,
        in_flight,
        faults: 0,
        restarts: 0,
    };
    let pool = |workers: Vec<WorkerSnapshot>| PoolSnapshot {
        now: workers.len() as u64,
        min: 1,
        max: 3,
        high_water: 3,
        scale_ups: 2,
        retirements: 0,
        workers,
    };
    let mut a = block("pool", 10, 0, 10);
    a.workers = Some(pool(vec![worker(0, 6, 1), worker(1, 4, 0)]));
    let mut b = block("pool", 40, 0, 38);
    b.workers = Some(pool(vec![worker(0, 26, 2), worker(1, 4, 0), worker(2, 10, 1)]));
    let (a, b) = (sample(t0, 0, vec![a]), sample(t0, 1000, vec![b]));
    let view = View { workers: true, ..VIEW };
    let text = frame(Some(&a), &b, &view);
    assert_eq!(cell(&text, "pool", "WORKERS"), "3/3", "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("  #")).collect();
    assert_eq!(rows.len(), 3, "{text}");
    let line = |id: &str| {
        let l = rows.iter().find(|l| l.starts_with(&format!("  #{id} "))).expect("worker row");
        l.split_whitespace().collect::<Vec<_>>()
    };
    // Number, state, version, IN/s, then QUEUE (in flight), faults, restarts.
    assert_eq!(line("0"), ["#0", "running", "v1", "20", "2", "0", "0"], "{text}");
    assert_eq!(line("1"), ["#1", "running", "v1", "0", "0", "0", "0"], "{text}");
    assert_eq!(line("2"), ["#2", "running", "v1", "-", "1", "0", "0"], "a new worker: {text}");
    // Without `--workers`, the block's row only.
    assert!(!frame(Some(&a), &b, &VIEW).contains("  #"));
}

#[test]
fn the_header_says_what_the_host_says_and_a_silent_host_is_said_so() {
    let t0 = Instant::now();
    let mut s = sample(t0, 0, vec![block("a", 0, 0, 0)]);
    let plain = frame(None, &s, &VIEW);
    assert_eq!(plain.lines().next(), Some("bagpipe 127.0.0.1:9330  12:00:00  1 blocks"), "{plain}");
    s.host = Some(HostInfo {
        version: Some("0.4.0".to_owned()),
        started_at_ms: Some(1),
        uptime_ms: Some(3_723_000),
        server: Some(ServerInfo {
            url: Some("nats://127.0.0.1:4222".to_owned()),
            state: Some("connected".to_owned()),
            reconnects: Some(2),
        }),
    });
    let header = frame(None, &s, &VIEW).lines().next().map(str::to_owned);
    assert_eq!(
        header.as_deref(),
        Some(
            "bagpipe 127.0.0.1:9330  12:00:00  version 0.4.0  up 1h02m  \
             server connected nats://127.0.0.1:4222 (2 reconnects)  1 blocks"
        )
    );
    s.host = Some(HostInfo { server: None, ..HostInfo::default() });
    assert!(frame(None, &s, &VIEW).lines().next().is_some_and(|h| h.contains("no server")));

    let gone = Sample { blocks: Err("connection refused".to_owned()), host: None, ..s.clone() };
    let text = frame(Some(&s), &gone, &VIEW);
    assert_eq!(text.lines().nth(1), Some("host not answering: connection refused; trying again"), "{text}");
    // And when it is back, the rows again, with no rate against the sample before it left.
    let back = sample(t0, 2000, vec![block("a", 9, 0, 9)]);
    assert_eq!(cell(&frame(Some(&gone), &back, &VIEW), "a", "IN/s"), "-");
}

#[test]
fn blocks_json_of_an_older_host_without_the_newer_fields_reads() {
    let body = r#"[{"name":"sink","responsibility":"sink","state":"running","version":"abc","received":3,
        "processed":3,"failed":0,"sent":0,"published":0,"faults":0,"restarts":0,"dead_letters":0,
        "queue_depth":1,"swaps":0,"extra":true}]"#;
    let blocks: Vec<Block> = serde_json::from_str(body).expect("reads");
    assert_eq!((blocks[0].queue_capacity, blocks[0].last_swap_at_ms), (None, None));
    let newer = r#"[{"responsibility":"s","queue_capacity":64,"last_swap_at_ms":5,"last_fault_at_ms":null}]"#;
    let blocks: Vec<Block> = serde_json::from_str(newer).expect("reads");
    assert_eq!((blocks[0].queue_capacity, blocks[0].last_swap_at_ms), (Some(64), Some(5)));
    let host: HostInfo =
        serde_json::from_str(r#"{"version":"1","started_at_ms":1,"uptime_ms":2,"server":null,"logs":null}"#)
            .expect("reads");
    assert!(host.server.is_none());
}

#[test]
fn rates_and_durations_read_short() {
    assert_eq!(
        [per_sec(0.0), per_sec(0.3), per_sec(9.96), per_sec(830.4), per_sec(12_400.0)],
        ["0", "0.3", "10", "830", "12.4k"]
    );
    assert_eq!(
        [duration(42_000), duration(185_000), duration(7_620_000), duration(273_600_000)],
        ["42s", "3m05s", "2h07m", "3d04h"]
    );
}
