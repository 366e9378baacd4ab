//! The COW format against AOSP's own libsnapshot_cow, built from AOSP source in
//! `../shared/tools/aosp/bin`: `inspect_cow` accepts every COW we write (v2 and v3, each
//! compression, several compression factors) and finds its merge sequence consistent;
//! `applycow` (AOSP's reader: the snapshot view, the in-place merge and
//! `CompressedSnapshotReader`) turns the base image into exactly the new image, with compressed
//! units in each compressing COW (zstd and brotli from the C encoders, `decompress::encode`,
//! gz from flate2, lz4 from lz4_flex); our reader
//! applies COWs made by AOSP's writer (`mkcow`) to the same image `applycow` gives.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use abupdate::cow::{write_image_cow, Compression, CowOptions, CowReader, CowWriter, OpType};
use common::Rng;

const BS: usize = 4096;

fn tool(name: &str) -> PathBuf {
    let shared = std::env::var_os("ABUPDATE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    shared.join("tools/aosp/bin").join(name)
}

fn run(name: &str, args: &[&str]) -> String {
    let out = Command::new(tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} {args:?} failed: {all}");
    all
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An old image and a new one made from it the ways updates change images: unchanged runs,
/// shifted runs, swapped blocks, a 3-cycle of blocks, zeroed blocks, small edits, new data,
/// and a longer new image.
fn image_pair(blocks: usize) -> (Vec<u8>, Vec<u8>) {
    let mut rng = Rng(0xc0ff_ee00 + blocks as u64);
    let old = common::mixed_image(&mut rng, blocks);
    let mut new = old.clone();
    let blk = |img: &[u8], i: usize| img[i * BS..(i + 1) * BS].to_vec();
    let put = |img: &mut Vec<u8>, i: usize, b: &[u8]| img[i * BS..(i + 1) * BS].copy_from_slice(b);
    // A run shifted down by one block: a chain of copies.
    for i in 10..30 {
        let b = blk(&old, i + 1);
        put(&mut new, i, &b);
    }
    // Swaps and a 3-cycle: dependency cycles, one copy of each must become a replace.
    for (a, b) in [(40, 41), (50, 60)] {
        let (x, y) = (blk(&old, a), blk(&old, b));
        put(&mut new, a, &y);
        put(&mut new, b, &x);
    }
    let (x, y, z) = (blk(&old, 70), blk(&old, 71), blk(&old, 72));
    put(&mut new, 70, &y);
    put(&mut new, 71, &z);
    put(&mut new, 72, &x);
    // A far move, zeroed blocks, small edits and fresh data.
    for i in 0..8 {
        let b = blk(&old, blocks - 20 + i);
        put(&mut new, 80 + i, &b);
    }
    new[100 * BS..110 * BS].fill(0);
    for i in 120..140 {
        new[i * BS + 17] ^= 0x5a;
    }
    rng.fill(&mut new[150 * BS..190 * BS]);
    let mut tail = vec![0u8; 24 * BS];
    for b in tail.chunks_mut(BS).step_by(2) {
        common::text_block(&mut rng, b);
    }
    new.extend_from_slice(&tail);
    (old, new)
}

struct Case {
    dir: tempfile::TempDir,
    old: PathBuf,
    new: PathBuf,
    new_bytes: Vec<u8>,
}

fn case(blocks: usize) -> Case {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = image_pair(blocks);
    let (o, n) = (dir.path().join("old.img"), dir.path().join("new.img"));
    std::fs::write(&o, &old).unwrap();
    std::fs::write(&n, &new).unwrap();
    Case {
        dir,
        old: o,
        new: n,
        new_bytes: new,
    }
}

/// Writes a COW with the library, from the files of `c`.
fn write_cow(c: &Case, opts: CowOptions, with_source: bool, name: &str) -> PathBuf {
    let new = std::fs::read(&c.new).unwrap();
    let old = std::fs::read(&c.old).unwrap();
    let (bytes, summary) =
        write_image_cow(&new, with_source.then_some(&old), opts, Vec::new()).unwrap();
    assert_eq!(summary.file_size, bytes.len() as u64);
    let path = c.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// inspect_cow accepts the COW and finds the merge sequence consistent; every applycow mode
/// makes the new image from `base`.
fn check_with_aosp(c: &Case, cow: &Path, base: &Path, decompress: bool) {
    let mut args = vec!["--verify_merge_sequence"];
    if decompress {
        args.push("--decompress");
    }
    args.push(s(cow));
    let report = run("inspect_cow", &args);
    assert!(
        report.contains("Merge sequence is consistent."),
        "{cow:?}: {report}"
    );
    let out = c.dir.path().join("aosp-out.img");
    let size = c.new_bytes.len().to_string();
    for mode in ["view", "merge", "reader"] {
        run(
            "applycow",
            &["--mode", mode, "--size", &size, s(base), s(cow), s(&out)],
        );
        assert!(
            std::fs::read(&out).unwrap() == c.new_bytes,
            "{cow:?}: applycow --mode {mode} differs from the new image"
        );
    }
}

/// For a compressing `alg`, some of the COW's data ops hold compressed units (shorter than
/// the unit), so AOSP's readers above decoded output of our compressor, not raw fallbacks.
fn assert_compressed(cow: &Path, alg: Compression) {
    if alg == Compression::None {
        return;
    }
    let bytes = std::fs::read(cow).unwrap();
    let reader = CowReader::parse(&bytes, None).unwrap();
    let compressed = reader
        .ops
        .iter()
        .filter(|o| matches!(o.kind, OpType::Replace | OpType::Xor))
        .filter(|o| u64::from(o.data_length) < reader.unit_size(o))
        .count();
    assert!(compressed > 0, "{cow:?}: no compressed {} unit", alg.name());
}

const ALL: [Compression; 5] = [
    Compression::None,
    Compression::Gz,
    Compression::Lz4,
    Compression::Zstd,
    Compression::Brotli,
];

#[test]
fn v2_cows_we_write_pass_aosp() {
    let c = case(200);
    for alg in ALL {
        let opts = CowOptions {
            version: 2,
            compression: alg,
            ..CowOptions::default()
        };
        let cow = write_cow(&c, opts, true, &format!("v2-{}.cow", alg.name()));
        assert_compressed(&cow, alg);
        check_with_aosp(&c, &cow, &c.old, true);
    }
    // Small clusters (many cluster ops and a closing cluster before the footer) and no
    // clusters at all (which carries no sequence data: AOSP misreads that layout).
    for cluster_ops in [2, 16] {
        let opts = CowOptions {
            version: 2,
            compression: Compression::Lz4,
            cluster_ops,
            ..CowOptions::default()
        };
        let cow = write_cow(&c, opts, true, "v2-clusters.cow");
        check_with_aosp(&c, &cow, &c.old, true);
    }
    let opts = CowOptions {
        version: 2,
        compression: Compression::Gz,
        cluster_ops: 0,
        ..CowOptions::default()
    };
    let cow = write_cow(&c, opts, false, "v2-flat.cow");
    check_with_aosp(&c, &cow, Path::new("/dev/null"), true);
}

#[test]
fn v3_cows_we_write_pass_aosp() {
    let c = case(200);
    for alg in ALL {
        for factor in [4096u32, 16384, 65536, 262144] {
            if alg == Compression::Brotli && factor > 16384 {
                continue; // quality 11 is slow; 4 and 16 KiB units cover it
            }
            let opts = CowOptions {
                version: 3,
                compression: alg,
                compression_factor: factor,
                threads: 2,
                ..CowOptions::default()
            };
            let cow = write_cow(&c, opts, true, &format!("v3-{}-{factor}.cow", alg.name()));
            assert_compressed(&cow, alg);
            // inspect_cow --decompress reads units in 4 KiB buffers, which fails on raw
            // units larger than a block (an AOSP quirk, see the tools' README).
            check_with_aosp(&c, &cow, &c.old, factor == 4096);
        }
    }
    // A full COW: no source, every block a replace or zero op.
    let opts = CowOptions {
        version: 3,
        compression: Compression::Lz4,
        compression_factor: 65536,
        ..CowOptions::default()
    };
    let cow = write_cow(&c, opts, false, "v3-full.cow");
    check_with_aosp(&c, &cow, Path::new("/dev/null"), false);
}

/// Our reader over COWs from AOSP's writer: the image equals applycow's and the new image.
#[test]
fn we_read_cows_aosp_writes() {
    let c = case(200);
    let size = c.new_bytes.len().to_string();
    let old = std::fs::read(&c.old).unwrap();
    let cases: &[&[&str]] = &[
        &["--version", "2", "--compression", "gz"],
        &["--version", "2", "--compression", "lz4", "--xor"],
        &[
            "--version",
            "2",
            "--compression",
            "none",
            "--cluster-ops",
            "0",
            "--no-sequence",
        ],
        &[
            "--version",
            "2",
            "--compression",
            "brotli",
            "--label-every",
            "16",
        ],
        &[
            "--version",
            "3",
            "--compression",
            "lz4",
            "--compression-factor",
            "65536",
        ],
        &[
            "--version",
            "3",
            "--compression",
            "zstd",
            "--compression-factor",
            "262144",
            "--xor",
            "--xor-offset",
            "100",
        ],
        &[
            "--version",
            "3",
            "--compression",
            "gz",
            "--label-every",
            "16",
        ],
        &["--version", "3", "--compression", "none", "--no-sequence"],
    ];
    for args in cases {
        let cow = c.dir.path().join("mkcow.cow");
        let mut all = args.to_vec();
        all.extend(["--source", s(&c.old), s(&c.new), s(&cow)]);
        run("mkcow", &all);
        let reference = c.dir.path().join("applycow.img");
        run(
            "applycow",
            &["--size", &size, s(&c.old), s(&cow), s(&reference)],
        );
        let bytes = std::fs::read(&cow).unwrap();
        let reader = CowReader::parse(&bytes, None).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        reader.verify_merge_order().unwrap();
        let mut out = old.clone();
        out.resize(c.new_bytes.len(), 0);
        reader
            .apply(&bytes, &old, &mut out, c.new_bytes.len() as u64)
            .unwrap();
        assert!(
            out == std::fs::read(&reference).unwrap(),
            "{args:?}: differs from applycow"
        );
        assert!(out == c.new_bytes, "{args:?}: differs from the new image");
        if args.contains(&"--xor") {
            assert!(reader.ops.iter().any(|o| o.kind == OpType::Xor), "{args:?}");
        }
    }
}

/// Labels: a v2 COW read up to a label stops there; a v3 COW keeps the last four resume
/// points, each naming the ops durable with it; inspect_cow and applycow accept both.
#[test]
fn labels_and_resume_points() {
    let c = case(200);
    for version in [2u16, 3] {
        let opts = CowOptions {
            version,
            compression: Compression::Lz4,
            max_blocks: Some((c.new_bytes.len() / BS) as u64),
            ..CowOptions::default()
        };
        let mut w = CowWriter::new(opts, Vec::new()).unwrap();
        let mut at = 0;
        for (label, chunk) in c.new_bytes.chunks(8 * BS).enumerate() {
            w.add_raw_blocks(at, chunk).unwrap();
            at += (chunk.len() / BS) as u64;
            w.add_label(label as u64).unwrap();
        }
        let (bytes, summary) = w.finalize().unwrap();
        let labels = summary.labels;
        assert!(labels >= 8);
        let whole = CowReader::parse(&bytes, None).unwrap();
        let cut = CowReader::parse(&bytes, Some(labels - 2)).unwrap();
        let data_ops = |r: &CowReader| r.ops.iter().filter(|o| o.kind == OpType::Replace).count();
        assert_eq!(data_ops(&cut), data_ops(&whole) - 8, "v{version}");
        if version == 3 {
            let kept: Vec<u64> = whole.resume_points.iter().map(|p| p.label).collect();
            assert_eq!(kept, (labels - 4..labels).collect::<Vec<_>>());
            assert!(
                CowReader::parse(&bytes, Some(0)).is_err(),
                "label 0 fell out"
            );
        } else {
            assert_eq!(cut.last_label, Some(labels - 2));
        }
        let cow = c.dir.path().join(format!("labels-v{version}.cow"));
        std::fs::write(&cow, &bytes).unwrap();
        check_with_aosp(&c, &cow, Path::new("/dev/null"), true);
    }
}

/// The host tool end to end: `cow write` with a source, `cow info`, `cow apply`.
#[test]
fn cli_write_info_apply() {
    let c = case(200);
    let bin = env!("CARGO_BIN_EXE_abupdate");
    let cow = c.dir.path().join("cli.cow");
    let out = c.dir.path().join("cli-out.img");
    let size = c.new_bytes.len().to_string();
    let ok = |args: &[&str]| {
        let o = Command::new(bin).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let written = ok(&[
        "cow",
        "write",
        "--version",
        "3",
        "--compression",
        "lz4",
        "--compression-factor",
        "65536",
        "--source",
        s(&c.old),
        s(&c.new),
        s(&cow),
    ]);
    assert!(written.contains("copy="), "{written}");
    let info = ok(&["cow", "info", s(&cow)]);
    assert!(info.contains("version:          3.0"), "{info}");
    assert!(info.contains("merge order:      consistent"), "{info}");
    ok(&["cow", "apply", "--size", &size, s(&c.old), s(&cow), s(&out)]);
    assert!(std::fs::read(&out).unwrap() == c.new_bytes);
    check_with_aosp(&c, &cow, &c.old, false);
}

/// Payload merge operations planned into ordered COW ops (`engine::cow_plan`): the COW passes
/// `inspect_cow --verify_merge_sequence`, and AOSP's in-place merge (`applycow --mode merge`,
/// snapuserd's order, sources read from the partly merged image) gives the new image, although
/// the operations are listed in an order that would corrupt it.
#[test]
fn merge_ops_plan_merges_in_place_under_aosp() {
    use abupdate::engine::cow_plan::{plan_merge_ops, PlannedOp};
    use abupdate::payload::proto::update_metadata::cow_merge_operation::Type;
    use abupdate::payload::proto::update_metadata::{CowMergeOperation, Extent};

    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5e9_0e0c);
    let blocks = 160usize;
    let old = common::mixed_image(&mut rng, blocks);
    let op = |kind: Type, src: u64, dst: u64, n: u64, offset: u32| {
        let mut m = CowMergeOperation::new();
        m.set_type(kind);
        let ext = |start, num| {
            let mut e = Extent::new();
            e.set_start_block(start);
            e.set_num_blocks(num);
            e
        };
        m.src_extent = Some(ext(src, n)).into();
        m.dst_extent = Some(ext(dst, n)).into();
        m.set_src_offset(offset);
        m
    };
    let ops = vec![
        op(Type::COW_COPY, 0, 2, 6, 0),
        op(Type::COW_COPY, 11, 10, 6, 0),
        op(Type::COW_COPY, 20, 21, 1, 0),
        op(Type::COW_COPY, 21, 20, 1, 0),
        op(Type::COW_COPY, 30, 31, 1, 0),
        op(Type::COW_COPY, 31, 32, 1, 0),
        op(Type::COW_COPY, 32, 30, 1, 0),
        op(Type::COW_XOR, 40, 50, 3, 100),
        op(Type::COW_COPY, 60, 41, 1, 0),
        op(Type::COW_COPY, 70, 90, 10, 0),
        op(Type::COW_REPLACE, 0, 120, 3, 0),
    ];
    // The new image: every op from the untouched old image; XOR targets are their source
    // bytes slightly edited, replaced blocks fresh data.
    let mut new = old.clone();
    for m in &ops {
        let (s, d) = (
            m.src_extent.start_block() as usize,
            m.dst_extent.start_block() as usize,
        );
        for k in 0..m.dst_extent.num_blocks() as usize {
            let at = (s + k) * BS + m.src_offset() as usize;
            let dst = &mut new[(d + k) * BS..(d + k + 1) * BS];
            match m.type_() {
                Type::COW_COPY => dst.copy_from_slice(&old[at..at + BS]),
                Type::COW_XOR => {
                    dst.copy_from_slice(&old[at..at + BS]);
                    dst[7] ^= 0x41;
                    dst[3000] = dst[3000].wrapping_add(1);
                }
                Type::COW_REPLACE => rng.fill(dst),
            }
        }
    }
    let plan = plan_merge_ops(&ops, BS as u32).unwrap();
    assert_eq!(
        plan.demoted.len(),
        2,
        "one op of the swap and of the 3-cycle"
    );

    let opts = CowOptions {
        version: 3,
        compression: Compression::Lz4,
        max_blocks: Some(blocks as u64),
        ..CowOptions::default()
    };
    let mut w = CowWriter::new(opts, Vec::new()).unwrap();
    w.add_sequence(&plan.sequence).unwrap();
    let mut ordered = std::collections::HashSet::new();
    for p in &plan.ops {
        ordered.insert(p.new_block());
        match *p {
            PlannedOp::Copy {
                new_block,
                old_block,
            } => w.add_copy(new_block, old_block, 1).unwrap(),
            PlannedOp::Xor {
                new_block,
                old_block,
                offset,
            } => {
                let at = old_block as usize * BS + offset as usize;
                let nb = new_block as usize;
                let data: Vec<u8> = new[nb * BS..(nb + 1) * BS]
                    .iter()
                    .zip(&old[at..at + BS])
                    .map(|(a, b)| a ^ b)
                    .collect();
                w.add_xor_blocks(new_block as u32, &data, old_block as u32, offset as u16)
                    .unwrap();
            }
        }
    }
    for b in 0..blocks {
        let range = b * BS..(b + 1) * BS;
        if !ordered.contains(&(b as u64)) && new[range.clone()] != old[range.clone()] {
            w.add_raw_blocks(b as u64, &new[range]).unwrap();
        }
    }
    let (bytes, summary) = w.finalize().unwrap();
    assert!(summary.xor_ops == 3 && summary.copy_ops > 20);
    let c = Case {
        old: dir.path().join("old.img"),
        new: dir.path().join("new.img"),
        new_bytes: new,
        dir,
    };
    std::fs::write(&c.old, &old).unwrap();
    std::fs::write(&c.new, &c.new_bytes).unwrap();
    let cow = c.dir.path().join("planned.cow");
    std::fs::write(&cow, &bytes).unwrap();
    check_with_aosp(&c, &cow, &c.old, true);
    CowReader::parse(&bytes, None)
        .unwrap()
        .verify_merge_order()
        .unwrap();
}

/// The writer's output does not depend on its compression threads, nor on how
/// `write_image_cow` batches runs: COWs written with 3 threads are byte for byte the COWs
/// written one run at a time (`add_raw_blocks`/`add_zero_blocks` per run, runs cut every
/// 512 blocks as `write_image_cow` cuts them) on one thread, and AOSP reads them.
#[test]
fn threads_and_batches_do_not_change_the_bytes() {
    let blocks = 2200; // more than one batch (2048 blocks), runs across the 512-block cuts
    let mut rng = Rng(0x7e57);
    let mut new = vec![0u8; blocks * BS];
    let mut at = 0;
    while at < blocks {
        let run = (1 + rng.below(700) as usize).min(blocks - at);
        let kind = rng.below(3);
        for b in new[at * BS..(at + run) * BS].chunks_mut(BS) {
            match kind {
                0 => {}
                1 => rng.fill(b),
                _ => common::text_block(&mut rng, b),
            }
        }
        at += run;
    }
    let is_zero = |b: &[u8]| b.iter().all(|&x| x == 0);
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (3, Compression::Lz4, 65536),
        (3, Compression::Zstd, 262144),
        (3, Compression::Gz, 16384),
        (3, Compression::None, 65536),
        (2, Compression::Lz4, 4096),
        (2, Compression::Gz, 4096),
    ];
    for (version, compression, factor) in cases {
        let opts = |threads| CowOptions {
            version,
            compression,
            compression_factor: factor,
            threads,
            max_blocks: Some(blocks as u64),
            ..CowOptions::default()
        };
        let (batched, _) = write_image_cow(&new, None::<&Vec<u8>>, opts(3), Vec::new()).unwrap();
        let mut w = CowWriter::new(opts(1), Vec::new()).unwrap();
        for (c, chunk) in new.chunks(512 * BS).enumerate() {
            let mut i = 0;
            while i < chunk.len() / BS {
                let zero = is_zero(&chunk[i * BS..(i + 1) * BS]);
                let mut j = i + 1;
                while j < chunk.len() / BS && is_zero(&chunk[j * BS..(j + 1) * BS]) == zero {
                    j += 1;
                }
                let first = (c * 512 + i) as u64;
                if zero {
                    w.add_zero_blocks(first, (j - i) as u64).unwrap();
                } else {
                    w.add_raw_blocks(first, &chunk[i * BS..j * BS]).unwrap();
                }
                i = j;
            }
        }
        let (single, _) = w.finalize().unwrap();
        let name = format!("v{version}-{}-{factor}", compression.name());
        assert!(
            batched == single,
            "{name}: 3 threads, batched != 1 thread, per run"
        );
        let cow = dir.path().join(format!("{name}.cow"));
        std::fs::write(&cow, &batched).unwrap();
        run("inspect_cow", &[s(&cow)]);
        let out = dir.path().join("out.img");
        let size = new.len().to_string();
        run(
            "applycow",
            &["--size", &size, "/dev/null", s(&cow), s(&out)],
        );
        assert!(
            std::fs::read(&out).unwrap() == new,
            "{name}: applycow differs"
        );
    }
}

/// v3 resume points against AOSP's own writer: the op stream `mkcow --label-every` writes
/// (no source: REPLACE runs, then ZERO runs, a label after every 16 or more blocks), written
/// by ours, is byte for byte mkcow's COW except the header's `resume_point_count`. AOSP's
/// `EmitLabel` counts every label it was given, while its buffer keeps the last four, and its
/// parser reads that many points (op records past the fourth); ours stores the number of
/// points in the buffer, which AOSP's parser reads as exactly the stored points.
#[test]
fn v3_labels_match_aosp_but_for_the_resume_point_count() {
    let blocks = 300;
    let mut rng = Rng(0x1abe1);
    let mut new = common::mixed_image(&mut rng, blocks);
    new[200 * BS..230 * BS].fill(0);
    let dir = tempfile::tempdir().unwrap();
    let (new_path, aosp_path) = (dir.path().join("new.img"), dir.path().join("aosp.cow"));
    std::fs::write(&new_path, &new).unwrap();
    let every = 16u64;
    run(
        "mkcow",
        &[
            "--version",
            "3",
            "--compression",
            "none",
            "--label-every",
            &every.to_string(),
            s(&new_path),
            s(&aosp_path),
        ],
    );
    let aosp = std::fs::read(&aosp_path).unwrap();

    let opts = CowOptions {
        version: 3,
        compression: Compression::None,
        max_blocks: Some(blocks as u64),
        ..CowOptions::default()
    };
    let mut w = CowWriter::new(opts, Vec::new()).unwrap();
    let zero: Vec<bool> = new.chunks(BS).map(|b| b.iter().all(|&x| x == 0)).collect();
    let (mut since, mut label) = (0u64, 1u64);
    for want_zero in [false, true] {
        let mut i = 0;
        while i < blocks {
            if zero[i] != want_zero {
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < blocks && zero[j] == want_zero {
                j += 1;
            }
            if want_zero {
                w.add_zero_blocks(i as u64, (j - i) as u64).unwrap();
            } else {
                w.add_raw_blocks(i as u64, &new[i * BS..j * BS]).unwrap();
            }
            since += (j - i) as u64;
            if since >= every {
                since = 0;
                w.add_label(label).unwrap();
                label += 1;
            }
            i = j;
        }
    }
    let (ours, summary) = w.finalize().unwrap();
    let labels = summary.labels;
    assert!(labels > 4, "only {labels} labels");

    // resume_point_count: a u32 at byte 46 of the v3 header.
    let count = |b: &[u8]| u32::from_le_bytes(b[46..50].try_into().unwrap());
    assert_eq!(count(&aosp), labels as u32, "AOSP counts every label");
    assert_eq!(count(&ours), 4, "ours counts the stored points");
    assert_eq!(ours.len(), aosp.len());
    let mut patched = ours.clone();
    patched[46..50].copy_from_slice(&aosp[46..50]);
    assert!(
        patched == aosp,
        "ours differs from mkcow's beyond resume_point_count"
    );

    // Both readers see the same four points in both files.
    for bytes in [&ours, &aosp] {
        let r = CowReader::parse(bytes, None).unwrap();
        let kept: Vec<u64> = r.resume_points.iter().map(|p| p.label).collect();
        assert_eq!(kept, (labels - 3..=labels).collect::<Vec<_>>());
        CowReader::parse(bytes, Some(labels - 1)).unwrap();
    }
    let cow = dir.path().join("ours.cow");
    std::fs::write(&cow, &ours).unwrap();
    run("inspect_cow", &[s(&cow)]);
}
