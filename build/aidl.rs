//! Generates the Rust side of the `aidl/` interfaces with rsbinder-aidl, for host builds, and
//! of `platform_aidl/` (the keystore2 and KeyMint subset the device key uses, which a host
//! does not have; see platform_aidl/README.md).
//!
//! The AOSP build does not run build scripts: there `aidl_interface` in Android.bp makes
//! the crate (and the platform has keystore2's), and `src/service/binder_adapter/android.rs`
//! uses them instead.

use std::path::Path;

/// Writes `$OUT_DIR/abupdate_aidl.rs`, included by the host Binder adapter.
pub fn generate() {
    // Read at run time: a build script compiled in another checkout (a copied target/)
    // would otherwise generate that checkout's interfaces.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("aidl");
    let platform = Path::new(&manifest_dir).join("platform_aidl");
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed={}", platform.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("android") {
        return;
    }
    let result = rsbinder_aidl::Builder::new()
        .source(&root)
        .include_dir(&root)
        .source(&platform)
        .include_dir(&platform)
        .output("abupdate_aidl.rs")
        .set_async_support(false)
        .generate();
    if let Err(err) = result {
        // A panic would bury the report in a backtrace; print it whole and stop the build.
        eprintln!("rsbinder-aidl failed on {}: {err:?}", root.display());
        std::process::exit(1);
    }
}
