//! Where the tests find what the repository does not carry: AOSP's sample payloads and the
//! AOSP tools built from source, under `../shared` beside the checkout or `$ABUPDATE_SHARED`.
//! A missing one fails the test with one line naming the path and what goes there.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `ROOT/relative`, where ROOT is `$ABUPDATE_SHARED` or `../shared` beside the checkout;
/// panics naming the path and `what` belongs there if it does not exist.
pub fn shared_path(relative: &str, what: &str) -> PathBuf {
    let root = std::env::var_os("ABUPDATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let path = root.join(relative);
    assert!(
        path.exists(),
        "{} is missing: it should hold {what} (set ABUPDATE_SHARED to the directory with \
         testdata/ and tools/; default ../shared beside the checkout)",
        path.display()
    );
    path
}

/// AOSP's sample images and payloads.
pub fn aosp_samples() -> PathBuf {
    shared_path(
        "testdata/aosp-update-engine",
        "AOSP system/update_engine's sample_images.tar.bz2 and sample_payloads.tar.xz",
    )
}

/// An AOSP host tool built from source (`lpmake`, `lpdump`, `simg2img`, ...).
pub fn aosp_tool(name: &str) -> PathBuf {
    shared_path(
        &format!("tools/aosp/bin/{name}"),
        &format!("AOSP's {name}, built from AOSP source (see tools/aosp/README)"),
    )
}

/// One of AOSP's delta tools (`puffin`, `zucchini`, `zucchini_op`, `bsdiff`, `bspatch`),
/// built from AOSP source.
pub fn aosp_delta_tool(name: &str) -> PathBuf {
    shared_path(
        &format!("tools/aosp-delta/bin/{name}"),
        &format!("AOSP's {name}, built from AOSP source (see tools/aosp-delta/README.md)"),
    )
}
