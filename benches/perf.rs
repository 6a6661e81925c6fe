//! The benchmark of docs/performance.md: karpctl against the emulator behind the latency layer
//! (`tests/support/faults.rs`, 50 ms per request by default, about a real region's round trip),
//! in-process, for a fresh `init` of the AWS side, a no-op re-run, `doctor --only aws` and
//! `teardown`. For each: wall time (min/median/max over the runs), requests, mutating requests,
//! and the longest chain of requests made one after another (the round trips the run waited
//! for). Every run gets a fresh emulator account; one untimed run warms everything up first.
//!
//! `scripts/bench [--runs N] [--latency-ms MS] [--chain]` (or `cargo bench --bench perf`) prints the
//! table; `--chain` also prints each phase's longest chain of requests, `--requests` every request
//! of each phase with its start and end.
//! Under `cargo test` (no `--bench` argument) it runs twice, at a latency long enough that the
//! emulator's own time rarely blurs which request waited for which, and checks the round-trip
//! budgets (counts, never times; the fewest over the runs): fresh init at most 5 sequential
//! round trips, the no-op re-run and doctor at most 2 and no writes, teardown at most 5.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::faults::{FaultConfig, FaultLayer, Stats};
use support::Env;

const C: &str = "bench";

/// One thing measured.
struct Phase {
    name: &'static str,
    target: &'static str,
    /// Budgets checked under `cargo test`: (most sequential round trips, writes allowed).
    budget: Option<(usize, bool)>,
    wall: Vec<Duration>,
    stats: Vec<Stats>,
    /// The last run's longest chain, as `service:Action` (printed with `--chain`, and when a
    /// budget is broken: where the round trip to cut is).
    chain: Vec<String>,
}

impl Phase {
    fn new(name: &'static str, target: &'static str, budget: Option<(usize, bool)>) -> Self {
        Phase { name, target, budget, wall: Vec::new(), stats: Vec::new(), chain: Vec::new() }
    }
}

fn arg(args: &[String], name: &str) -> Option<u64> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

fn main() -> ExitCode {
    // Pages of IAM's default MaxItems, as a real region answers: the tests' two-item pages
    // (tests/support/moto_ext.py) would count the emulator's pages, not karpctl's round trips.
    std::env::set_var("KARPCTL_MOTO_PAGE_SIZE", "100");
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    // Under `cargo test`, two runs: a request the emulator answered late (the machine is busy)
    // can make requests that did not wait for each other look sequential, but never the
    // reverse, so the budget holds the fewest round trips a run needed.
    let runs = arg(&args, "--runs").unwrap_or(if bench { 7 } else { 2 }) as usize;
    // Under `cargo test` the machine is busy (other test binaries, the lint beside them): a
    // latency well above any scheduling delay keeps a request that merely started late from
    // counting as one that waited for another.
    let latency = Duration::from_millis(arg(&args, "--latency-ms").unwrap_or(if bench { 50 } else { 400 }));
    // Like the binary: a multi-threaded runtime.
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let phases = rt.block_on(measure(runs, latency, args.iter().any(|a| a == "--requests")));
    print(&phases, runs, latency, bench);
    if args.iter().any(|a| a == "--chain") {
        for p in &phases {
            println!("{}: {}", p.name, p.chain.join(" -> "));
        }
    }
    if bench {
        return ExitCode::SUCCESS;
    }
    let mut ok = true;
    for p in &phases {
        let Some((chain, writes_allowed)) = p.budget else { continue };
        let fewest = p.stats.iter().map(|s| s.longest_chain).min().unwrap_or(0);
        if fewest > chain {
            eprintln!("FAIL {}: {fewest} sequential round trips, budget {chain}: {}", p.name, p.chain.join(" -> "));
            ok = false;
        }
        for s in &p.stats {
            if !writes_allowed && s.mutating > 0 {
                eprintln!("FAIL {}: {} mutating requests, budget 0", p.name, s.mutating);
                ok = false;
            }
        }
    }
    if ok {
        eprintln!("round-trip budgets held");
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every request of a phase, by start (milliseconds from the first): which waited for which.
fn print_requests(phase: &str, log: &[support::faults::Exchange]) {
    let mut log = log.to_vec();
    log.sort_by_key(|e| e.start);
    let t0 = log.first().map(|e| e.start).unwrap_or_default();
    println!("{phase}: start end (ms) request");
    for e in &log {
        println!("{:>7} {:>7} {}:{}", (e.start - t0).as_millis(), (e.end - t0).as_millis(), e.service, e.action);
    }
}

async fn measure(runs: usize, latency: Duration, requests: bool) -> Vec<Phase> {
    let mut phases = vec![
        Phase::new("fresh init (AWS side)", "<= 5 sequential", Some((5, true))),
        Phase::new("no-op re-run", "<= 2 sequential, 0 mutating", Some((2, false))),
        Phase::new("doctor --only aws", "<= 3 sequential", Some((2, false))),
        Phase::new("teardown", "<= 6 sequential", Some((5, true))),
    ];
    let emit = tempfile::tempdir().expect("temp dir");
    let dir = emit.path().to_str().expect("utf-8 temp dir");
    let init = ["init", "-c", C, "--yes", "--emit", dir];
    let commands: [&[&str]; 4] = [&init, &init, &["doctor", "-c", C, "--only", "aws"], &["teardown", "-c", C, "--yes"]];
    // Run 0 is the warm-up: first connections, the emulator's lazily built services.
    for run in 0..=runs {
        let env = prepared().await;
        let layer = FaultLayer::new(FaultConfig::latency(latency));
        for (phase, args) in phases.iter_mut().zip(commands) {
            let (wall, stats) = timed(&env, &layer, args).await;
            if run > 0 {
                phase.wall.push(wall);
                phase.stats.push(stats);
                phase.chain = support::faults::chain(&layer.requests())
                    .iter()
                    .map(|e| format!("{}:{}", e.service, e.action))
                    .collect();
                if requests {
                    print_requests(phase.name, &layer.requests());
                }
            }
        }
    }
    phases
}

/// A fresh account with the cluster, and every emulator service karpctl uses already built
/// for the account (the emulator builds a service's state on an account's first request to it,
/// which for IAM means loading every AWS managed policy: a cost no real region has).
async fn prepared() -> Env {
    let env = Env::new().await;
    env.seed_cluster(C, Some("API_AND_CONFIG_MAP")).await;
    let aws = &env.aws;
    let (a, b, c, d) = tokio::join!(
        aws.iam.list_roles().send(),
        aws.sqs.list_queues().send(),
        aws.events.list_rules().send(),
        aws.sts.get_caller_identity().send()
    );
    a.expect("warm IAM");
    b.expect("warm SQS");
    c.expect("warm EventBridge");
    d.expect("warm STS");
    env
}

async fn timed(env: &Env, layer: &Arc<FaultLayer>, args: &[&str]) -> (Duration, Stats) {
    layer.clear();
    let start = Instant::now();
    let report = env.run_through(layer, args).await.unwrap_or_else(|e| panic!("{args:?} failed: {e}"));
    let wall = start.elapsed();
    assert_eq!(report.exit_code, 0, "{args:?}\n{}", report.text);
    (wall, layer.stats())
}

fn print(phases: &[Phase], runs: usize, latency: Duration, bench: bool) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    println!(
        "karpctl benchmark: {runs} runs, latency {} ms per request, {profile} build, {cpu}, {cores} cores",
        latency.as_millis()
    );
    println!(
        "{:<24} {:>28} {:>9} {:>9} {:>11}  target",
        "phase", "wall min / median / max", "requests", "mutating", "sequential"
    );
    for p in phases {
        let mut wall = p.wall.clone();
        wall.sort();
        let secs = |d: Option<&Duration>| d.map_or(f64::NAN, Duration::as_secs_f64);
        let range = |f: fn(&Stats) -> usize| {
            let (lo, hi) = (p.stats.iter().map(f).min().unwrap_or(0), p.stats.iter().map(f).max().unwrap_or(0));
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        };
        println!(
            "{:<24} {:>28} {:>9} {:>9} {:>11}  {}",
            p.name,
            format!("{:.3} / {:.3} / {:.3} s", secs(wall.first()), secs(wall.get(wall.len() / 2)), secs(wall.last())),
            range(|s| s.requests),
            range(|s| s.mutating),
            range(|s| s.longest_chain),
            // The time targets are for the benchmark's 50 ms; the check compares round trips only.
            match (bench, p.budget) {
                (true, _) | (false, None) => p.target.to_string(),
                (false, Some((chain, true))) => format!("budget: <= {chain} sequential"),
                (false, Some((chain, false))) => format!("budget: <= {chain} sequential, 0 mutating"),
            }
        );
    }
}
