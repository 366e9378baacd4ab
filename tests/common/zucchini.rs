//! Zucchini material for the tests: raw firmware-like image pairs, and ZUCCHINI operation
//! blobs made by AOSP's `zucchini_op gen` (update_engine's generator: brotli of a zucchini
//! ensemble patch).

use std::path::Path;
use std::process::Command;

use super::Rng;

/// A firmware-like image of `len` bytes (random runs, text, tables, zeros) and its next
/// version: blocks inserted and deleted (so the rest shifts), bytes changed in place, and a
/// region moved, the changes Zucchini's raw matching turns into equivalences, extra data and
/// raw delta.
pub fn raw_pair(rng: &mut Rng, len: usize) -> (Vec<u8>, Vec<u8>) {
    let blocks = len.div_ceil(4096);
    let mut old = super::mixed_image(rng, blocks);
    // Tables of little-endian words that differ by small amounts from version to version.
    for word in old.chunks_mut(4).skip(7).step_by(97) {
        word.copy_from_slice(&(rng.below(1 << 20) as u32).to_le_bytes());
    }
    old.truncate(len);
    let mut new = old.clone();
    for _ in 0..40 {
        let at = rng.below(new.len() as u64) as usize;
        new[at] = new[at].wrapping_add(1 + rng.below(200) as u8);
    }
    let at = rng.below((new.len() / 2) as u64) as usize;
    let mut inserted = vec![0u8; 3000];
    rng.fill(&mut inserted);
    new.splice(at..at, inserted);
    let at = new.len() / 2 + rng.below((new.len() / 4) as u64) as usize;
    new.drain(at..at + 1500);
    let (from, to, moved) = (new.len() / 8, new.len() * 5 / 8, (new.len() / 8).min(8192));
    new.copy_within(from..from + moved, to);
    new.truncate(len);
    new.resize(len, 0x33);
    (old, new)
}

/// `zucchini -gen old new` (and `extra` flags): the raw ensemble patch.
pub fn gen(dir: &Path, old: &[u8], new: &[u8], extra: &[&str]) -> Vec<u8> {
    let (o, n, p) = (dir.join("old"), dir.join("new"), dir.join("patch"));
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    let out = Command::new(super::shared::aosp_delta_tool("zucchini"))
        .arg("-gen")
        .args([&o, &n, &p])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zucchini -gen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(p).unwrap()
}

/// AOSP's ZUCCHINI operation blob from `old` to `new` (`zucchini_op gen`, or `raw-gen` for
/// Zucchini's raw matching without element detection), made in `dir`.
pub fn op_blob(dir: &Path, old: &[u8], new: &[u8], mode: &str) -> Vec<u8> {
    let (o, n, b) = (
        dir.join("zop.old"),
        dir.join("zop.new"),
        dir.join("zop.blob"),
    );
    std::fs::write(&o, old).unwrap();
    std::fs::write(&n, new).unwrap();
    let out = Command::new(super::shared::aosp_delta_tool("zucchini_op"))
        .arg(mode)
        .args([&o, &n, &b])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zucchini_op {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(b).unwrap()
}

/// C source of a program of `functions` functions calling each other, a table of pointers to
/// them (relocated pointers in a PIE) and strings; `version` 2 inserts functions early and
/// changes constants, so code and data shift the way a new build's do.
fn program_source(functions: usize, version: u32) -> String {
    let mut src = String::from("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n");
    let extra = if version == 2 { 7 } else { 0 };
    for i in 0..functions + extra {
        // Version 2's extra functions come first, so everything after them moves.
        let (name, k) = if i < extra {
            (format!("extra{i}"), i as u32 * 31 + 5)
        } else {
            let j = i - extra;
            let k = if version == 2 && j % 11 == 3 {
                j * 7 + 1
            } else {
                j * 7
            };
            (format!("f{j}"), k as u32)
        };
        src.push_str(&format!(
            "__attribute__((noinline)) int {name}(int x) {{ static const char s[] = \"{name}-{k}\"; \
             return x * {k} + (int)strlen(s) + (x > {k} ? {prev}(x - 1) : 0); }}\n",
            prev = if i == 0 { "abs".to_string() } else if i <= extra { format!("extra{}", i - 1) } else { format!("f{}", i - extra - 1) },
        ));
    }
    src.push_str("int (*const table[])(int) = {");
    for j in 0..functions {
        src.push_str(&format!("f{j},"));
    }
    src.push_str("};\nint main(int argc, char **argv) { int t = 0; (void)argv;\n");
    src.push_str(&format!(
        "for (unsigned i = 0; i < sizeof table / sizeof *table; i++) t += table[i](argc + (int)i);\n\
         printf(\"%d {version}\\n\", t); return 0; }}\n"
    ));
    src
}

/// `gcc -O2` builds (`extra_flags` added) of version 1 and 2 of a generated program of
/// `functions` functions, made in `dir`: an x86-64 PIE by default.
pub fn gcc_pair(dir: &Path, functions: usize, extra_flags: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let build = |version: u32| {
        let (c, out) = (
            dir.join(format!("prog{version}.c")),
            dir.join(format!("prog{version}")),
        );
        std::fs::write(&c, program_source(functions, version)).unwrap();
        let status = Command::new("gcc")
            .args(["-O2", "-o"])
            .arg(&out)
            .arg(&c)
            .args(extra_flags)
            .status()
            .unwrap();
        assert!(status.success(), "gcc failed");
        std::fs::read(out).unwrap()
    };
    (build(1), build(2))
}

/// LLVM IR of a library of `functions` functions: each branches on a bit and a comparison of
/// its argument (AArch64 TBZ/B.cond/CBZ), calls the previous one (BL, CALL) and returns; a
/// table of pointers to them and to their strings (relocated pointers in a shared library).
/// `version` 2 inserts functions early and changes constants.
fn library_ir(functions: usize, version: u32) -> String {
    let extra = if version == 2 { 5 } else { 0 };
    let names: Vec<(String, u32)> = (0..functions + extra)
        .map(|i| {
            if i < extra {
                (format!("extra{i}"), i as u32 * 29 + 3)
            } else {
                let j = i - extra;
                let k = if version == 2 && j % 13 == 4 {
                    j * 5 + 2
                } else {
                    j * 5
                };
                (format!("f{j}"), k as u32)
            }
        })
        .collect();
    let mut ir = String::new();
    for (i, (name, k)) in names.iter().enumerate() {
        let text = format!("{name}-{k}");
        ir.push_str(&format!(
            "@s.{name} = constant [{} x i8] c\"{text}\\00\"\n",
            text.len() + 1
        ));
        let call = if i == 0 {
            "%r = add i32 %y, 1".to_string()
        } else {
            format!("%r = call i32 @{}(i32 %y)", names[i - 1].0)
        };
        ir.push_str(&format!(
            "define hidden i32 @{name}(i32 %x) noinline {{\n\
             entry:\n  %b = and i32 %x, 4\n  %z = icmp eq i32 %b, 0\n  br i1 %z, label %cmp, label %odd\n\
             odd:\n  %o = xor i32 %x, {k}\n  ret i32 %o\n\
             cmp:\n  %c = icmp sgt i32 %x, {k}\n  br i1 %c, label %rec, label %done\n\
             rec:\n  %y = sub i32 %x, 1\n  {call}\n  %m = mul i32 %r, {k}\n  ret i32 %m\n\
             done:\n  %a = add i32 %x, {k}\n  ret i32 %a\n}}\n"
        ));
    }
    let fns: Vec<String> = (0..functions)
        .map(|j| format!("i32 (i32)* @f{j}"))
        .collect();
    ir.push_str(&format!(
        "@table = constant [{functions} x i32 (i32)*] [{}]\n",
        fns.join(", ")
    ));
    let strs: Vec<String> = names
        .iter()
        .map(|(name, k)| {
            let n = format!("{name}-{k}").len() + 1;
            format!("i8* getelementptr ([{n} x i8], [{n} x i8]* @s.{name}, i32 0, i32 0)")
        })
        .collect();
    ir.push_str(&format!(
        "@strings = constant [{} x i8*] [{}]\n",
        strs.len(),
        strs.join(", ")
    ));
    ir
}

/// A shared library for `triple` (`aarch64-linux-gnu`, `i686-linux-gnu`, ...) from LLVM IR:
/// Debian's `llc` compiles it, the Rust toolchain's `rust-lld` links it.
fn llvm_library(dir: &Path, triple: &str, name: &str, ir: &str) -> Vec<u8> {
    let (ll, obj, so) = (
        dir.join(format!("{name}.ll")),
        dir.join(format!("{name}.o")),
        dir.join(format!("{name}.so")),
    );
    std::fs::write(&ll, ir).unwrap();
    let status = Command::new("llc")
        .args([
            &format!("-mtriple={triple}"),
            "-O2",
            "-filetype=obj",
            "-relocation-model=pic",
            "-o",
        ])
        .arg(&obj)
        .arg(&ll)
        .status()
        .expect("llc (Debian's llvm)");
    assert!(status.success(), "llc failed");
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .unwrap();
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    let lld = Path::new(sysroot.trim()).join("lib/rustlib/x86_64-unknown-linux-gnu/bin/rust-lld");
    let status = Command::new(lld)
        .args(["-flavor", "gnu", "-shared", "-z", "norelro", "-o"])
        .arg(&so)
        .arg(&obj)
        .status()
        .expect("rust-lld");
    assert!(status.success(), "rust-lld failed");
    std::fs::read(so).unwrap()
}

/// Version 1 and 2 of a generated shared library of `functions` functions for `triple`.
pub fn llvm_pair(dir: &Path, triple: &str, functions: usize) -> (Vec<u8>, Vec<u8>) {
    (
        llvm_library(dir, triple, "lib1", &library_ir(functions, 1)),
        llvm_library(dir, triple, "lib2", &library_ir(functions, 2)),
    )
}

/// Two builds of a generated DEX program (`tests/dex_gen.py`): DEX `version` (35 or 39) with
/// `classes` classes, or with `embed` that DEX inside a vdex-like container. Bare DEX files are
/// first checked with Debian's `dexdump` (ART's verifier, which accepts them).
pub fn dex_pair(dir: &Path, version: u32, classes: usize, embed: bool) -> (Vec<u8>, Vec<u8>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dex_gen.py");
    let build = |build: u32| {
        let out = dir.join(format!("gen{version}-{classes}-{build}.dex"));
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(&out).args([
            "--version",
            &version.to_string(),
            "--build",
            &build.to_string(),
            "--classes",
            &classes.to_string(),
        ]);
        if embed {
            cmd.arg("--embed");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "dex_gen.py failed");
        if !embed {
            let dump = Command::new("dexdump")
                .arg("-d")
                .arg(&out)
                .output()
                .unwrap();
            assert!(
                dump.status.success() && !String::from_utf8_lossy(&dump.stderr).contains("Failure"),
                "dexdump refused {}: {}",
                out.display(),
                String::from_utf8_lossy(&dump.stderr)
            );
        }
        std::fs::read(out).unwrap()
    };
    (build(1), build(2))
}

/// `zucchini -apply old patch`: AOSP's own output.
pub fn aosp_apply(dir: &Path, old: &[u8], patch: &[u8]) -> Vec<u8> {
    let (o, p, n) = (dir.join("ap.old"), dir.join("ap.patch"), dir.join("ap.new"));
    std::fs::write(&o, old).unwrap();
    std::fs::write(&p, patch).unwrap();
    let out = Command::new(super::shared::aosp_delta_tool("zucchini"))
        .arg("-apply")
        .args([&o, &p, &n])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "zucchini -apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(n).unwrap()
}

/// `data` padded with zeros to whole 4096-byte blocks.
pub fn padded(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    out.resize(data.len().next_multiple_of(4096), 0);
    out
}

/// Applies a payload whose `system` is one ZUCCHINI operation from `old` to `new` (AOSP's
/// blob for the whole image) to a device holding `old`; returns the result and the target.
pub fn apply_zucchini_payload(
    dir: &Path,
    old: &[u8],
    new: &[u8],
) -> (abupdate::error::Result<()>, Vec<u8>) {
    let blob = op_blob(dir, old, new, "gen");
    apply_blob_payload(dir, old, new, blob)
}

/// As [`apply_zucchini_payload`], with `blob` as the operation's data.
pub fn apply_blob_payload(
    dir: &Path,
    old: &[u8],
    new: &[u8],
    blob: Vec<u8>,
) -> (abupdate::error::Result<()>, Vec<u8>) {
    use abupdate::payload::proto::update_metadata::install_operation::Type;
    use abupdate::payload::proto::update_metadata::{Extent, InstallOperation};

    let (old_img, new_img) = (dir.join("old.img"), dir.join("new.img"));
    std::fs::write(&old_img, old).unwrap();
    std::fs::write(&new_img, new).unwrap();
    // A delta payload from our builder, its `system` operations replaced by the one ZUCCHINI
    // operation AOSP's generator would write for the whole image.
    let payload_path = dir.join("payload.bin");
    super::build_payload(&payload_path, &[("system", new_img, Some(old_img))]);
    let mut forge = super::forge::Forge::read(&payload_path);
    forge.edit(|m| {
        let mut op = InstallOperation::new();
        op.set_type(Type::ZUCCHINI);
        let extent = |len: usize| {
            let mut e = Extent::new();
            e.set_start_block(0);
            e.set_num_blocks((len / 4096) as u64);
            e
        };
        op.src_extents.push(extent(old.len()));
        op.dst_extents.push(extent(new.len()));
        op.set_src_sha256_hash(super::forge::sha256(old).to_vec());
        m.partitions[0].operations = vec![op];
    });
    forge.edit_ops(|_, _, op, data| {
        assert_eq!(op.type_(), Type::ZUCCHINI);
        *data = blob.clone();
    });
    std::fs::write(&payload_path, forge.to_bytes()).unwrap();
    let (result, target) = super::apply_to_system(dir, &payload_path, old, new.len());
    let result =
        result.map(|report| assert_eq!(report.metadata.manifest.partitions[0].operations.len(), 1));
    (result, target)
}
