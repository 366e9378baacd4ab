//! update_engine's Binder faces over the same service: `android.os.IUpdateEngine` as
//! "android.os.UpdateEngineService" and `android.os.IUpdateEngineStable` as
//! "android.os.UpdateEngineStableService", registered next to `abupdate` by
//! `abupdated --update-engine-compat`, so that android.os.UpdateEngine (system_server, GMS,
//! updater apps), Settings' UpdateEngineStable, update_engine_client and update_device.py
//! drive abupdate unchanged. One [`UpdateService`](crate::service::UpdateService) serves
//! every face: there is one update at a time whichever interface started it.
//!
//! The faces speak update_engine's numbers ([`codes`]): its UpdateStatus in callbacks, its
//! ErrorCode in completions and service-specific exceptions, thrown where update_engine's
//! UpdateAttempterAndroid throws them (66 applying after an applied update, 65 applying during
//! one, 1 for suspend/resume/cancel/reset with nothing to act on or bad headers).

pub mod client;
pub mod codes;
mod faces;
mod metadata_file;

pub use self::client::{UeCallbackRelay, UeEvent};
pub use self::faces::{StableService, UpdateEngineService};
pub use self::metadata_file::read_metadata;

/// The names update_engine's services register under.
pub const UPDATE_ENGINE_SERVICE: &str = "android.os.UpdateEngineService";
pub const STABLE_SERVICE: &str = "android.os.UpdateEngineStableService";

// The generated code is read from build.rs's OUT_DIR: Cargo builds only.
#[cfg(all(test, not(soong)))]
mod tests {
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
}
