//! Generates the Rust side of the `aidl/` interface with rsbinder-aidl, for host builds.
//!
//! The AOSP build does not run build scripts: there `aidl_interface` in Android.bp makes
//! the crate, and `src/service/binder_adapter/android.rs` uses it instead.

use std::path::Path;

/// Writes `$OUT_DIR/abupdate_aidl.rs`, included by the host Binder adapter.
pub fn generate() {
    // Read at run time: a build script compiled in another checkout (a copied target/)
    // would otherwise generate that checkout's interfaces.
    let manifest_dir =
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("aidl");
    println!("cargo:rerun-if-changed={}", root.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("android") {
        return;
    }
    let result = rsbinder_aidl::Builder::new()
        .source(&root)
        .include_dir(&root)
        .output("abupdate_aidl.rs")
        .set_async_support(false)
        .generate();
    if let Err(err) = result {
        // A panic would bury the report in a backtrace; print it whole and stop the build.
        eprintln!("rsbinder-aidl failed on {}: {err:?}", root.display());
        std::process::exit(1);
    }
}
