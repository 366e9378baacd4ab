//! ZUCCHINI patches of DEX files against AOSP's own zucchini (`../shared/tools/aosp-delta`):
//! two builds of a generated program (`tests/dex_gen.py`, DEX 035 and 039, checked by Debian's
//! `dexdump`), bare and inside a vdex-like container, patched by `zucchini -gen` and
//! `zucchini_op gen` into `DEX ` elements, apply here byte for byte as `zucchini -apply` does.

mod common;

use abupdate::zucchini::{self, ExeType, Patch};

#[test]
fn aosp_zucchini_patches_of_dex_files_apply_here() {
    let tmp = tempfile::tempdir().unwrap();
    for (version, classes, embed) in [
        (35, 12, false),
        (39, 12, false),
        (35, 150, false),
        (39, 120, true),
    ] {
        let name = format!(
            "DEX 0{version}, {classes} classes{}",
            if embed { ", embedded" } else { "" }
        );
        let (old, new) = common::zucchini::dex_pair(tmp.path(), version, classes, embed);
        let bytes = common::zucchini::gen(tmp.path(), &old, &new, &[]);
        let patch = Patch::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            patch
                .elements
                .iter()
                .any(|e| e.exe_type == ExeType::Executable(*b"DEX ")),
            "{name}: no DEX element"
        );
        assert!(common::zucchini::aosp_apply(tmp.path(), &old, &bytes) == new);
        let out = zucchini::apply(&old, &patch).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out == new, "{name}: applied to different bytes");
        let blob = common::zucchini::op_blob(tmp.path(), &old, &new, "gen");
        let out =
            zucchini::apply_op(&old, &blob, new.len()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            out == new,
            "{name}: the ZUCCHINI blob applied to different bytes"
        );
        eprintln!(
            "{name}: {} -> {} bytes, patch {} bytes, blob {} bytes",
            old.len(),
            new.len(),
            bytes.len(),
            blob.len()
        );
    }
}
