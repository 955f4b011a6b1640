//! The fault suite at its small size: a real fleet under a limited workload
//! while workers are killed with SIGKILL, Redis restarts and one worker's
//! connection hangs; scripts/chaos.sh judges from the commands' own logs.
//! Once with one partition, once with three.

use sluice_tests::bin;

/// One fault run at a time: each is timed against its own wait limit, and
/// two at once on a small machine would starve each other.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs scripts/chaos.sh --small with `extra` arguments; it must pass.
fn chaos_passes(extra: &[&str]) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin_dir = bin("sluice").parent().unwrap().to_path_buf();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/chaos.sh"))
        .arg("--small")
        .args(extra)
        .env("SLUICE_BIN_DIR", &bin_dir)
        .output()
        .expect("run scripts/chaos.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "chaos.sh failed:\n{text}");
    assert!(text.contains("PASSED"), "{text}");
}

#[test]
fn the_limit_and_the_data_hold_under_faults() {
    chaos_passes(&[]);
}

/// The same faults with the namespace in 3 partitions: each worker runs a
/// loop per partition, sharing its room, and the flow's keyed steps live
/// away from their runs, crossing through the hand-off.
#[test]
fn the_limit_and_the_data_hold_under_faults_with_partitions() {
    chaos_passes(&["--partitions", "3"]);
}
