//! A property-based model of routing, through the real `bagpipe` binary: random senders,
//! receivers, queue sizes (by count and by bytes), bag limits, bags that make their receiver trap
//! or refuse them, retry policies, and a hot swap of a receiver while bags flow to it. What the
//! receivers were given must be what the model ([`model`]) predicts from the plan and from what
//! each `enqueue` returned.
//!
//! Each case is a scenario the `modelled` fixture plays: every sender follows its plan, a chunk
//! of sends per timer tick, then sends each receiver a `fin` bag (again while the queue is full).
//! The case waits for every `fin` to be delivered (FIFO per sender pair: everything a sender sent
//! to that receiver was handled before), stops the host gracefully and checks the model. With a
//! swap, the senders named in the swapped receiver's `wake` keep a trickle of `pump` bags going to
//! it until the instance the swap brought in tells them `go` from its `restore`, so bags flow
//! while the swap happens (for two seconds at most: a swap that lands during a restart's backoff
//! brings in an instance without `restore`).
//!
//! Cases come from proptest's `TestRunner`, from a seed printed first (`ROUTING_MODEL_SEED=<seed>`
//! runs the same cases again, `ROUTING_MODEL_CASES=<n>` runs more); a failing case is shrunk a
//! little and printed as its manifest.

use std::time::Duration;

use bagpipe_test_support::{Bagpipe, BlockDir, Finished, Report, Want, Write, artifacts, variant, version_of};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};

#[path = "routing_model/model.rs"]
mod model;

const BIN: &str = env!("CARGO_BIN_EXE_bagpipe");

/// Cases per run, unless `ROUTING_MODEL_CASES` says otherwise.
const CASES: u32 = 10;

/// The most planned sends per sender.
const MAX_PLAN: usize = 150;

/// Every receiver's `max_bag_bytes`: `big` bags are larger, every other bag smaller.
const MAX_BAG: u64 = 512;

/// The padding of a `big` bag.
const BIG: u64 = 600;

/// A receiver's `queue_bytes` when it is small: the least the host allows.
const SMALL_QUEUE_BYTES: u64 = MAX_BAG + 1024;

/// A responsibility no block has.
const NOBODY: &str = "nobody";

/// The longest a case may take to deliver every `fin`: past it, the case is stopped and checked
/// anyway, so that what went missing is named.
const CASE_LIMIT: Duration = Duration::from_secs(30);

/// What a bag asks of its receiver (the fixture's kinds; `pump` and `fin` bags are the fixture's
/// own, and behave as `ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Processed.
    Ok,
    /// Makes the receiver trap, at every delivery.
    Trap,
    /// The receiver returns an error for it.
    Err,
    /// Sets a host key: the host refuses it.
    Invalid,
    /// Larger than the receiver's `max_bag_bytes`.
    Big,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Trap => "trap",
            Kind::Err => "err",
            Kind::Invalid => "invalid",
            Kind::Big => "big",
        }
    }
}

/// One planned send: to receiver `to` (`None`: to a responsibility nobody has).
#[derive(Debug, Clone)]
pub struct Planned {
    to: Option<usize>,
    kind: Kind,
}

/// A receiver's limits and policy.
#[derive(Debug, Clone)]
pub struct Receiver {
    queue: u64,
    small_bytes: bool,
    max_attempts: u32,
    backoff_ms: u64,
}

/// A sender's plan.
#[derive(Debug, Clone)]
pub struct Sender {
    plan: Vec<Planned>,
    chunk: u64,
    /// Where it pumps bags to the swapped receiver, when it does.
    pump_at: usize,
    /// Whether it pumps (the first sender always does when there is a swap).
    pumps: bool,
}

/// One case.
#[derive(Clone)]
pub struct Scenario {
    enqueue_timeout_ms: u64,
    receivers: Vec<Receiver>,
    senders: Vec<Sender>,
    /// The receiver swapped for a variant of its component once the host runs.
    swap: Option<usize>,
}

pub fn receiver_name(i: usize) -> String {
    format!("r{i}")
}

pub fn sender_name(j: usize) -> String {
    format!("s{j}")
}

impl Planned {
    fn to_name(&self) -> String {
        self.to.map_or_else(|| NOBODY.to_owned(), receiver_name)
    }
}

impl Scenario {
    /// Where sender `j` pumps bags to the swapped receiver, if it does.
    fn pump_at(&self, j: usize) -> Option<usize> {
        let sender = &self.senders[j];
        self.swap.and((j == 0 || sender.pumps).then_some(sender.pump_at))
    }

    /// The senders the swapped receiver wakes.
    fn pumpers(&self) -> Vec<String> {
        (0..self.senders.len()).filter(|&j| self.pump_at(j).is_some()).map(sender_name).collect()
    }

    fn manifest(&self) -> String {
        let list = |names: &[String]| names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
        let receivers: Vec<String> = (0..self.receivers.len()).map(receiver_name).collect();
        let mut m = format!("[host]\nenqueue_timeout_ms = {}\n", self.enqueue_timeout_ms);
        for (i, r) in self.receivers.iter().enumerate() {
            let bytes = if r.small_bytes { format!("queue_bytes = {SMALL_QUEUE_BYTES}\n") } else { String::new() };
            let wake = if self.swap == Some(i) { self.pumpers() } else { Vec::new() };
            m += &format!(
                "\n[[block]]\nname = \"receiver_{i}\"\nresponsibility = \"r{i}\"\nafter = []\nqueue = {}\n{bytes}\
                 max_bag_bytes = {MAX_BAG}\nmax_attempts = {}\nmax_restarts = 1000000\nbackoff_ms = {}\nbackoff_max_ms = 10\n\
                 [block.config]\nwake = [{}]\n",
                r.queue,
                r.max_attempts,
                r.backoff_ms,
                list(&wake)
            );
        }
        for (j, s) in self.senders.iter().enumerate() {
            let plan: Vec<String> = s.plan.iter().map(|p| format!("{} {}", p.to_name(), p.kind.name())).collect();
            let pump = match (self.swap, self.pump_at(j)) {
                (Some(i), Some(at)) => format!("pump_to = \"r{i}\"\npump_at = {at}\n"),
                _ => String::new(),
            };
            m += &format!(
                "\n[[block]]\nname = \"modelled\"\nresponsibility = \"s{j}\"\nafter = [{}]\n[block.config]\n\
                 chunk = {}\nbig_bytes = {BIG}\nfin = [{}]\n{pump}plan = [{}]\n",
                list(&receivers),
                s.chunk,
                list(&receivers),
                list(&plan)
            );
        }
        m
    }
}

/// A scenario is shown as its manifest, and the swap.
impl std::fmt::Debug for Scenario {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.swap {
            Some(i) => writeln!(f, "# receiver_{i}.wasm is swapped for a variant once the host runs")?,
            None => writeln!(f, "# no swap")?,
        }
        f.write_str(&self.manifest())
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        70 => Just(Kind::Ok),
        8 => Just(Kind::Trap),
        8 => Just(Kind::Err),
        7 => Just(Kind::Invalid),
        7 => Just(Kind::Big),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1..=3usize, 1..=3usize)
        .prop_flat_map(|(senders, receivers)| {
            let receiver = (1..=32u64, any::<bool>(), 1..=3u32, 0..=2u64).prop_map(
                |(queue, small_bytes, max_attempts, backoff_ms)| Receiver {
                    queue,
                    small_bytes,
                    max_attempts,
                    backoff_ms,
                },
            );
            let send = (prop::option::weighted(0.97, 0..receivers), kind()).prop_map(|(to, kind)| Planned { to, kind });
            let sender =
                (prop::collection::vec(send, 0..=MAX_PLAN), 1..=16u64, any::<prop::sample::Index>(), any::<bool>())
                    .prop_map(|(plan, chunk, at, pumps)| Sender {
                        pump_at: at.index(plan.len() + 1),
                        plan,
                        chunk,
                        pumps,
                    });
            (
                0..=10u64,
                prop::collection::vec(receiver, receivers),
                prop::collection::vec(sender, senders),
                prop::option::of(0..receivers),
            )
        })
        .prop_map(|(enqueue_timeout_ms, receivers, senders, swap)| Scenario {
            enqueue_timeout_ms,
            receivers,
            senders,
            swap,
        })
}

/// Runs `scenario` on a real host; returns what the model found wrong, if anything.
async fn play(scenario: &Scenario) -> Result<String, String> {
    let mut components = vec![("modelled".to_owned(), artifacts::MODELLED)];
    components.extend((0..scenario.receivers.len()).map(|i| (format!("receiver_{i}"), artifacts::MODELLED)));
    let components: Vec<(&str, &str)> = components.iter().map(|(n, a)| (n.as_str(), *a)).collect();
    let dir = BlockDir::new(&scenario.manifest(), &components);
    let report = dir.report_path().display().to_string();
    let mut host = Bagpipe::run_with(BIN, &dir, &["--report", report.as_str()]);
    let swapped_in = variant(artifacts::MODELLED, "routing-model");
    let fins = scenario.senders.len() * scenario.receivers.len();
    let settled = tokio::time::timeout(CASE_LIMIT, async {
        if let Some(i) = scenario.swap {
            // A write before the watch starts would be seen only by the reloader's first, quiet look.
            host.log_records(&[Want::event("running"), Want::event("watching")]).await;
            dir.write_as(&format!("receiver_{i}.wasm"), &swapped_in, Write::Rename);
        }
        host.wait_for(fins, |e| e["event"] == "got" && e["bag"]["kind"] == "fin").await;
    })
    .await
    .is_ok();
    host.signal(libc::SIGTERM);
    let out: Finished = host.finish().await;
    if !out.status.success() {
        return Err(format!("bagpipe failed ({}):\n{}", out.status, out.stderr));
    }
    let report: Report = dir.report();
    let version = scenario.swap.map(|_| version_of(&swapped_in));
    let summary = model::check(scenario, &out, &report, version.as_deref())?;
    if !settled {
        return Err(format!("not every `fin` was delivered within {CASE_LIMIT:?}, yet the model holds ({summary})"));
    }
    Ok(summary)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn routing_delivers_what_the_model_predicts() {
    let seed = env_u64("ROUTING_MODEL_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64
    });
    let cases = env_u64("ROUTING_MODEL_CASES").map_or(CASES, |n| n as u32);
    eprintln!("routing model: seed {seed} ({cases} cases; ROUTING_MODEL_SEED={seed} runs them again)");
    let config = ProptestConfig {
        cases,
        // A case runs a host for a second or two: shrink a little, not for an hour.
        max_shrink_iters: 16,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let seed_bytes: Vec<u8> = std::iter::repeat_n(seed.to_le_bytes(), 4).flatten().collect();
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    let result = runner.run(&scenario(), |scenario| {
        let started = std::time::Instant::now();
        let outcome = runtime.block_on(play(&scenario));
        match outcome {
            Ok(summary) => {
                eprintln!("case passed in {:.1?}: {summary}", started.elapsed());
                Ok(())
            }
            Err(why) => {
                eprintln!("case failed in {:.1?}:\n{scenario:?}\n{why}", started.elapsed());
                Err(TestCaseError::fail(why))
            }
        }
    });
    if let Err(e) = result {
        panic!("routing differs from the model (seed {seed}): {e}");
    }
}
