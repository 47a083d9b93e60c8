//! Protocol in, broker out: syslog over TCP through the syslog block to a NATS subject, counted
//! by a subscriber, against a native program doing the same parse and publish (the block's own
//! parsing code, async-nats) in the same run; and how many messages five server crashes lose
//! when the block publishes to a stream (`publish_to_stream`, goal 0). Each figure uses a NATS
//! server of its own (`nats-server` from the machine).

use std::time::{Duration, Instant};

use bagpipe::{Host, HostConfig, Manifest};
use bagpipe_test_support::{BlockDir, Nats, artifacts, workspace_root};
use futures_util::StreamExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};

use crate::syslog::{line as syslog_line, parse as syslog_parse};
use crate::{next_log, paired, tap_log, untap_log};

/// What the table shows.
pub struct Figures {
    /// Messages/s at the subscriber, through the block.
    pub block: f64,
    /// The same, native.
    pub native: f64,
    /// Median of the per-round ratios block/native.
    pub ratio: f64,
    /// Messages sent in the crash run, and how many of them the stream does not hold.
    pub sent: u64,
    pub lost: u64,
}

/// Measures both, `n` messages a round.
pub async fn measure(n: u64) -> Figures {
    let nats = Nats::start(true).await;
    let host = Host::new(HostConfig {
        cache_dir: Some(workspace_root().join("target").join("bagpipe-test-cache")),
        server: Some(nats.url()),
        ..HostConfig::default()
    })
    .expect("host");
    let (native, block, ratio) = paired(|| native_publish(&nats, n), || through_block(&host, &nats, n)).await;
    drop(nats);
    let (sent, lost) = across_crashes(2500).await;
    Figures { block, native, ratio, sent, lost }
}

/// Counts `n` messages on `subject`; returns the rate from the first to the last.
async fn count(client: async_nats::Client, subject: &'static str, n: u64) -> impl Future<Output = f64> {
    let mut sub = client.subscribe(subject).await.expect("subscribe");
    client.flush().await.expect("flush");
    async move {
        let mut first = None;
        for _ in 0..n {
            if sub.next().await.is_none() {
                return f64::NAN;
            }
            first.get_or_insert_with(Instant::now);
        }
        first.map_or(f64::NAN, |t| (n - 1) as f64 / t.elapsed().as_secs_f64())
    }
}

/// Connects to `addr` and writes `n` syslog lines; returns the open connection.
async fn write_lines(addr: &str, n: u64) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    crate::syslog::write_lines(&mut stream, n).await;
    stream
}

async fn through_block(host: &Host, nats: &Nats, n: u64) -> f64 {
    let dir = BlockDir::new(
        "[[block]]\nname = \"syslog\"\nqueue = 1024\nlisten = [\"tcp://127.0.0.1:0\"]\npublish = [\"logs.>\"]\n\
         [block.config]\nto = \"\"\npublish = \"logs.syslog\"\n",
        &[("syslog", artifacts::SYSLOG)],
    );
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let counted = count(client, "logs.syslog", n).await;
    let mut log = tap_log();
    let (done_tx, done) = tokio::sync::oneshot::channel::<f64>();
    let drive = async {
        let Some(addr) = next_log(&mut log, |m| m.strip_prefix("listening on tcp://").map(str::to_owned)).await else {
            return;
        };
        let _open = write_lines(&addr, n).await;
        let _ = done_tx.send(counted.await);
    };
    let run = async {
        let (rate_tx, rate) = tokio::sync::oneshot::channel();
        let report = host
            .run(&manifest, async {
                let r = done.await.unwrap_or(f64::NAN);
                let _ = rate_tx.send(r);
            })
            .await;
        untap_log();
        report.expect("run");
        rate.await.unwrap_or(f64::NAN)
    };
    let (rate, ()) = tokio::join!(run, drive);
    rate
}

/// The same parse and publish as the block, natively: a TCP listener, the block's parser,
/// serde_json, async-nats.
async fn native_publish(nats: &Nats, n: u64) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let counted = count(client.clone(), "logs.native", n).await;
    let server = tokio::spawn(async move {
        let (socket, peer) = listener.accept().await.expect("accept");
        let peer = peer.to_string();
        let mut lines = tokio::io::BufReader::new(socket).lines();
        let mut seen = 0;
        while seen < n
            && let Ok(Some(line)) = lines.next_line().await
        {
            let mut bag = syslog_parse::parse(line.as_bytes()).expect("syslog");
            bag.insert("transport".into(), "tcp".into());
            bag.insert("peer".into(), peer.clone().into());
            let text = serde_json::to_string(&bag).expect("serialise");
            client.publish("logs.native", text.into()).await.expect("publish");
            seen += 1;
        }
        client.flush().await.expect("flush");
    });
    let _open = write_lines(&addr, n).await;
    let rate = counted.await;
    server.await.expect("native side");
    rate
}

/// The block publishing to a stream while the server crashes five times under a steady flow;
/// returns (sent, not in the stream).
async fn across_crashes(n: u64) -> (u64, u64) {
    let mut nats = Nats::start(true).await;
    let host = Host::new(HostConfig {
        cache_dir: Some(workspace_root().join("target").join("bagpipe-test-cache")),
        server: Some(nats.url()),
        ..HostConfig::default()
    })
    .expect("host");
    let dir = BlockDir::new(
        "[[stream]]\nname = \"LOGS\"\nsubjects = [\"logs.>\"]\n\n\
         [[block]]\nname = \"syslog\"\nlisten = [\"tcp://127.0.0.1:0\"]\npublish = [\"logs.>\"]\npublish_to_stream = true\n\
         [block.config]\nto = \"\"\npublish = \"logs.syslog\"\n",
        &[("syslog", artifacts::SYSLOG)],
    );
    let manifest = Manifest::load(dir.path()).expect("manifest");
    let mut log = tap_log();
    let (written_tx, written) = tokio::sync::oneshot::channel::<()>();
    let drive = async {
        let Some(addr) = next_log(&mut log, |m| m.strip_prefix("listening on tcp://").map(str::to_owned)).await else {
            return;
        };
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let mut pace = tokio::time::interval(Duration::from_millis(2));
        for k in 1..=n {
            pace.tick().await;
            stream.write_all(syslog_line(k).as_bytes()).await.expect("write");
            if k % 400 == 0 && k / 400 <= 5 {
                nats.stop().await;
                nats.restart().await;
            }
        }
        // Written is not yet read by the host: shutting down now would cut what is still in the
        // socket, which is not what this measures. Wait (bounded) until the stream holds every
        // message, then shut down gracefully; what is missing then is lost.
        if let Ok(client) = async_nats::connect(nats.url()).await {
            let js = async_nats::jetstream::new(client);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            while tokio::time::Instant::now() < deadline {
                let stored = match js.get_stream("LOGS").await {
                    Ok(mut s) => s.info().await.map_or(0, |i| i.state.messages),
                    Err(_) => 0,
                };
                if stored >= n {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let _ = written_tx.send(());
    };
    let run = async {
        // A graceful shutdown once everything is written: the outbox sends what waits.
        let report = host.run(&manifest, async { drop(written.await) }).await;
        untap_log();
        report.expect("run")
    };
    let (_, ()) = tokio::join!(run, drive);
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("LOGS").await.expect("stream");
    let stored = stream.info().await.expect("info").state.messages;
    (n, n.saturating_sub(stored))
}

/// Prints the table.
pub fn print(f: &Figures) {
    println!("| syslog over TCP -> block -> NATS subject                           | value      |");
    println!("|--------------------------------------------------------------------|-----------:|");
    println!("| through the syslog block, messages/s at a subscriber                | {:>10.0} |", f.block);
    println!("| native parse + publish (same parser, async-nats), messages/s        | {:>10.0} |", f.native);
    println!("| ... ratio block/native                                              | {:>10.2} |", f.ratio);
    println!(
        "| messages lost across 5 server crashes, stream mode (goal 0)         | {:>4} of {:>4} |",
        f.lost, f.sent
    );
}
