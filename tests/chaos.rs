//! The fault suite at its small size: a real fleet under a limited workload
//! while workers are killed with SIGKILL, Redis restarts and one worker's
//! connection hangs; scripts/chaos.sh judges from the commands' own logs.

use sluice_tests::bin;

#[test]
fn the_limit_and_the_data_hold_under_faults() {
    let bin_dir = bin("sluice").parent().unwrap().to_path_buf();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("bash")
        .arg(root.join("scripts/chaos.sh"))
        .arg("--small")
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
