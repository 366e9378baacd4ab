//! Runs the checks of the interface files with the real tools: the AIDL compiler of
//! Android 10 plus javac (tests/aidl/check.sh) and bpfmt (tests/aosp/check.sh). They fail,
//! not skip, when a tool is missing: CI installs `aidl`, `openjdk-17-jdk-headless` and
//! `blueprint-tools`.

use std::path::Path;
use std::process::Command;

fn run(script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = Command::new("bash").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn aidl_is_android_10_aidl_and_its_java_compiles() {
    run("tests/aidl/check.sh");
}

#[test]
fn android_bp_is_bpfmt_clean() {
    run("tests/aosp/check.sh");
}

#[test]
fn update_engine_aidl_has_aosp_transaction_numbers() {
    run("tests/aidl/update_engine_numbers.sh");
}
