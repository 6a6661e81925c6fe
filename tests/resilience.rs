mod support;

use std::time::{Duration, Instant};
use support::faults::{FaultConfig, FaultLayer};
use support::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explore() {
    let dir = tempfile::tempdir().unwrap();
    let emit = dir.path().to_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for seed in 0..10u64 {
        let emit = emit.clone();
        tasks.push(async move {
        let env = Env::new().await;
        env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
        let layer = FaultLayer::new(FaultConfig::faults(0.2, seed).with_latency(Duration::from_millis(2)));
        for args in [&["init", "-c", "demo", "--yes", "--emit", &emit][..], &["init", "-c", "demo", "--yes", "--emit", &emit], &["doctor", "-c", "demo", "--only", "aws"], &["teardown", "-c", "demo", "--yes"], &["teardown", "-c", "demo", "--yes"]] {
            layer.clear();
            let t = Instant::now();
            let r = env.run_through(&layer, args).await;
            let el = t.elapsed();
            let msg = match &r { Ok(rep) => format!("exit {}", rep.exit_code), Err(e) => format!("ERR {:?} {} | {:?}", e.kind, e, e.hint) };
            eprintln!("seed {seed} {:?}: {:?} {msg} stats={:?}", args[0], el, layer.stats());
        }
        });
    }
    futures::future::join_all(tasks).await;
}
