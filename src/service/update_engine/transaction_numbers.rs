//! The proxies and stubs rsbinder-aidl generated (read from build.rs's OUT_DIR: Cargo
//! builds only) use update_engine's transaction numbers.

/// The text of one interface's module in the code rsbinder-aidl generated from aidl/.
fn module<'a>(generated: &'a str, name: &str, next: &str) -> &'a str {
    let start = generated.find(&format!("pub mod {name} {{")).unwrap();
    let end = generated[start..]
        .find(&format!("pub mod {next} {{"))
        .unwrap();
    &generated[start..start + end]
}

fn assert_numbers(text: &str, methods: &[&str]) {
    for (n, name) in methods.iter().enumerate() {
        let line = format!(
            "const r#{name}: rsbinder::TransactionCode = rsbinder::FIRST_CALL_TRANSACTION + {n};"
        );
        assert!(text.contains(&line), "{name} is not transaction {}", n + 1);
    }
}

/// The proxies and stubs use update_engine's transaction numbers (FIRST_CALL_TRANSACTION
/// is 1): a stock client's transaction n reaches the method update_engine has there.
#[test]
fn transaction_numbers_are_update_engines() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/abupdate_aidl.rs"));
    let ue = module(generated, "IUpdateEngine", "IUpdateEngineCallback");
    assert_numbers(
        ue,
        &[
            "applyPayload",
            "applyPayloadFd",
            "bind",
            "unbind",
            "suspend",
            "resume",
            "cancel",
            "resetStatus",
            "setShouldSwitchSlotOnReboot",
            "resetShouldSwitchSlotOnReboot",
            "verifyPayloadApplicable",
            "allocateSpaceForPayload",
            "cleanupSuccessfulUpdate",
            "triggerPostinstall",
        ],
    );
    let callback = module(generated, "IUpdateEngineCallback", "IUpdateEngineStable");
    assert_numbers(
        callback,
        &["onStatusUpdate", "onPayloadApplicationComplete"],
    );
    let stable = module(
        generated,
        "IUpdateEngineStable",
        "IUpdateEngineStableCallback",
    );
    assert_numbers(stable, &["applyPayloadFd", "bind", "unbind"]);
}
