//! Runs java/check.sh: the Java client library compiled against the Java that Debian's `aidl`
//! generates from aidl/com/abupdate, and its test run on the JVM. Fails, not skips, when
//! `aidl`, `javac` or `java` is missing (CI installs `aidl` and `openjdk-17-jdk-headless`).

use std::path::Path;
use std::process::Command;

#[test]
fn java_client_builds_and_its_test_passes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/check.sh");
    let out = Command::new("bash").arg(&script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("UpdateManagerTest: all checks passed"),
        "java/check.sh failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
