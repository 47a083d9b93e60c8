//! The stats in Prometheus' text format (`/metrics`): a block's counters and gauges labelled by
//! block, component, state and version; its pool; the dead letters; the server connection; the
//! log publisher.

use std::fmt::Write as _;

use crate::routing::deadletter::DeadLetters;
use crate::stats::{PoolSnapshot, StatsSnapshot};

/// A metric: its name, its help text, and how to read it from a block's stats.
type Metric = (&'static str, &'static str, fn(&StatsSnapshot) -> u64);

/// A pool's metric: name, Prometheus type, help, value.
type PoolMetric = (&'static str, &'static str, &'static str, fn(&PoolSnapshot) -> u64);

/// The stats in Prometheus' text format.
pub fn prometheus(blocks: &[StatsSnapshot], dead_letters: &DeadLetters) -> String {
    let mut out = String::new();
    let counters: &[Metric] = &[
        ("received", "Bags put into the block's queue.", |s| s.received),
        ("processed", "Bags on-enqueue accepted.", |s| s.processed),
        ("failed", "Bags on-enqueue returned an error for.", |s| s.failed),
        ("refused_full", "Senders told queue-full by this block's queue.", |s| s.refused_full),
        ("refused_too_large", "Bags refused for being larger than the block accepts.", |s| s.refused_too_large),
        ("refused_invalid", "Bags refused for not being bags the block accepts.", |s| s.refused_invalid),
        ("budget_refusals", "Calls refused because the block had spent a budget.", |s| s.budget_refusals),
        ("logs_dropped", "Log lines past the block's rate, not written.", |s| s.logs_dropped),
        ("stdout_dropped", "Writes to stdout dropped: the host's stdout was not keeping up.", |s| s.stdout_dropped),
        ("batches", "Calls that delivered queued bags and socket events several at a time.", |s| s.batches),
        ("calls", "Calls to other blocks this block made.", |s| s.calls),
        ("calls_failed", "Calls of this block that ended without an answer.", |s| s.calls_failed),
        ("emitted", "Bags this block emitted on topics.", |s| s.emitted),
        (
            "topic_dropped",
            "Copies of topics' bags a lossy subscription of this block missed (its queue was full).",
            |s| s.topic_dropped,
        ),
        ("output_paced", "Times the block's output made it wait: it printed past its rate.", |s| s.output_paced),
        ("lost", "Bags still queued when the block ended.", |s| s.lost),
        ("sent", "Bags the block sent.", |s| s.sent),
        ("timers_fired", "Timers that fired.", |s| s.timers_fired),
        ("faults", "Traps, deadlines and limit breaches.", |s| s.faults),
        ("restarts", "Fresh instances started after a fault.", |s| s.restarts),
        ("dead_letters", "Bags given up on after faulting.", |s| s.dead_letters),
        ("returned", "Durable bags still queued at the end, left to their stream.", |s| s.returned),
        ("redelivered", "Durable bags their stream delivered again.", |s| s.redelivered),
        ("dead_letters_cut", "Durable dead letters cut to fit the server's max_payload.", |s| s.dead_letters_cut),
        ("publish_busy", "Publishes refused because the outbox was full.", |s| s.publish_busy),
        ("publish_retries", "Published messages sent again, unconfirmed by the server.", |s| s.publish_retries),
        ("publish_dropped", "Published messages never confirmed, left when the block ended.", |s| s.publish_dropped),
        ("outbox_recovered", "Unconfirmed messages an earlier run spilled, sent at start.", |s| s.outbox_recovered),
    ];
    for (name, help, get) in counters {
        let _ = writeln!(out, "# HELP bagpipe_block_{name}_total {help}\n# TYPE bagpipe_block_{name}_total counter");
        for s in blocks {
            let _ = writeln!(out, "bagpipe_block_{name}_total{} {}", labels(s), get(s));
        }
    }
    let gauges: [Metric; 4] = [
        ("queue_depth", "Bags in the queue now.", |s| s.queue_depth),
        ("queue_high_water", "Most bags the queue has held.", |s| s.queue_high_water),
        ("outbox_messages", "Published messages waiting for the server now.", |s| s.outbox_messages),
        ("outbox_bytes", "Bytes of published messages waiting for the server now.", |s| s.outbox_bytes),
    ];
    for (name, help, get) in gauges {
        let _ = writeln!(out, "# HELP bagpipe_block_{name} {help}\n# TYPE bagpipe_block_{name} gauge");
        for s in blocks {
            let _ = writeln!(out, "bagpipe_block_{name}{} {}", labels(s), get(s));
        }
    }
    // Blocks served by several workers: their pools.
    let pools: [PoolMetric; 4] = [
        ("workers", "gauge", "Workers serving the block now.", |p| p.now),
        ("workers_high_water", "gauge", "Most workers that served the block at once.", |p| p.high_water),
        ("worker_scale_ups_total", "counter", "Workers added because bags waited.", |p| p.scale_ups),
        ("worker_retirements_total", "counter", "Idle workers retired.", |p| p.retirements),
    ];
    for (name, kind, help, get) in pools {
        let _ = writeln!(out, "# HELP bagpipe_block_{name} {help}\n# TYPE bagpipe_block_{name} {kind}");
        for s in blocks {
            if let Some(pool) = &s.workers {
                let _ = writeln!(out, "bagpipe_block_{name}{} {}", labels(s), get(pool));
            }
        }
    }
    let _ = writeln!(out, "# HELP bagpipe_block_up 1 when the block is running.\n# TYPE bagpipe_block_up gauge");
    for s in blocks {
        let _ = writeln!(out, "bagpipe_block_up{} {}", labels(s), u8::from(s.state == "running"));
    }
    let _ = writeln!(
        out,
        "# HELP bagpipe_block_processing_seconds on-enqueue time.\n# TYPE bagpipe_block_processing_seconds summary"
    );
    for s in blocks {
        for (q, v) in [("0.5", s.processing_p50_us), ("0.99", s.processing_p99_us)] {
            if let Some(us) = v {
                let l = labels(s);
                let l = format!("{},quantile=\"{q}\"}}", &l[..l.len() - 1]);
                let _ = writeln!(out, "bagpipe_block_processing_seconds{l} {}", us / 1e6);
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP bagpipe_dead_letters_total Dead letters of this run.\n# TYPE bagpipe_dead_letters_total counter\nbagpipe_dead_letters_total {}",
        dead_letters.total()
    );
    out
}

pub fn server_metrics(s: &crate::io::server::ServerSnapshot) -> String {
    format!(
        "# HELP bagpipe_server_up 1 when connected to the message server.\n# TYPE bagpipe_server_up gauge\n\
         bagpipe_server_up{{url=\"{url}\"}} {up}\n\
         # HELP bagpipe_server_reconnects_total Connections made after the first.\n# TYPE bagpipe_server_reconnects_total counter\n\
         bagpipe_server_reconnects_total {}\n\
         # HELP bagpipe_server_published_total Messages published by blocks.\n# TYPE bagpipe_server_published_total counter\n\
         bagpipe_server_published_total {}\n\
         # HELP bagpipe_server_received_total Messages received for blocks.\n# TYPE bagpipe_server_received_total counter\n\
         bagpipe_server_received_total {}\n",
        s.reconnects,
        s.published,
        s.received,
        url = s.url.replace('"', "\\\""),
        up = u8::from(s.state == "connected"),
    )
}

fn labels(s: &StatsSnapshot) -> String {
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{block=\"{}\",component=\"{}\",state=\"{}\",version=\"{}\"}}",
        esc(&s.responsibility),
        esc(&s.name),
        s.state,
        s.version
    )
}

/// The log publisher's counts.
pub fn log_metrics(sink: &crate::ops::feed::LogSink) -> String {
    format!(
        "# HELP bagpipe_logs_published_total Log lines published to the server's log subject.\n# TYPE bagpipe_logs_published_total counter\n\
         bagpipe_logs_published_total {}\n\
         # HELP bagpipe_logs_dropped_total Log lines not published: past a block's rate, the queue full, or the server refused.\n# TYPE bagpipe_logs_dropped_total counter\n\
         bagpipe_logs_dropped_total {}\n",
        sink.published(),
        sink.dropped(),
    )
}
