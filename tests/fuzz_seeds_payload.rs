//! Replays every seed of the `payload_parse` fuzz target through the target's own checks
//! (`fuzz/fuzz_targets/payload_parse_check.rs`): none may panic, and each seed listed in
//! `fuzz/seeds/payload_parse.expected` must give its listed results with the payload size
//! unknown and known: `ok:<partitions>:<operations>` or `err:<code>` each.
//!
//! `cargo test --test fuzz_seeds_payload regenerate_seeds -- --ignored` rewrites the generated
//! seeds and the list (needs the AOSP samples as `aosp_samples` does). Seeds named `crash-*`
//! are inputs the fuzzer found to break the engine once; they are kept, listed by hand.

mod common;

#[path = "../fuzz/fuzz_targets/payload_parse_check.rs"]
mod check;

use std::path::{Path, PathBuf};

use abupdate::build::{self, BuildOptions, PartitionSpec};
use common::forge::{self, Forge};

fn seeds_dir() -> PathBuf {
    common::fuzz_seeds::seeds_dir("payload_parse")
}

fn expected_path() -> PathBuf {
    common::fuzz_seeds::expected_path("payload_parse")
}

/// `<streamed> <sized>`, each `ok:<partitions>:<operations>` or `err:<code>`.
fn outcome(data: &[u8]) -> String {
    let show = |result: abupdate::Result<abupdate::engine::metadata::Metadata>| match result {
        Ok(m) => format!(
            "ok:{}:{}",
            m.manifest.partitions.len(),
            m.manifest.operation_count()
        ),
        Err(e) => format!("err:{}", e.code.as_i32()),
    };
    let (streamed, sized) = check::run(data);
    format!("{} {}", show(streamed), show(sized))
}

#[test]
fn seeds_replay() {
    common::fuzz_seeds::replay("payload_parse", 10, outcome);
}

/// Rewrites the generated seeds: the metadata of AOSP's sample payloads and of our builder's
/// payloads (signed), and broken variants that reach deeper checks than random bytes would.
#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    let dir = seeds_dir();
    // Crash reproducers are kept as they are.
    let mut list = common::fuzz_seeds::clear_generated("payload_parse", |_| true);
    // Each seed's outcome is stated here, from what the edit breaks (21 malformed, 32
    // unsupported; a known size with only the metadata is 14, the blobs missing), and checked
    // against the code before it is written: the list is not whatever the code said.
    let mut put = |name: &str, forge: &Forge, want: &str| {
        let data = metadata_of(forge);
        assert_eq!(outcome(&data), want, "{name}");
        list.push_str(&format!("{name} {want}\n"));
        std::fs::write(dir.join(name), data).unwrap();
    };

    let tmp = tempfile::tempdir().unwrap();
    common::unpack_aosp_samples(tmp.path());
    let aosp_full = Forge::read(&tmp.path().join("full_payload.bin"));
    let aosp_delta = Forge::read(&tmp.path().join("delta_payload.bin"));
    // AOSP's samples: kernel and root, 3 operations in the full payload and 15 in the delta
    // (`payload-dumper --list` from PyPI lists kernel 2 + root 1, and 14 + 1).
    put("aosp-full.bin", &aosp_full, "ok:2:3 err:14");
    put("aosp-delta.bin", &aosp_delta, "ok:2:15 err:14");

    let (full, delta) = our_payloads(tmp.path());
    // Ours (`our_payloads`): one 160 KiB partition, which the full payload writes in one
    // operation (the builder chunks at 2 MiB).
    put("ours-full-signed.bin", &full, "ok:1:1 err:14");
    put("ours-delta-signed.bin", &delta, "ok:1:16 err:14");
    put(
        "ours-full-unsigned.bin",
        full.clone().unsign(),
        "ok:1:1 err:14",
    );

    use abupdate::payload::proto::update_metadata::install_operation::Type;
    let edited =
        |base: &Forge,
         f: fn(&mut abupdate::payload::proto::update_metadata::DeltaArchiveManifest)| {
            let mut forge = base.clone();
            forge.edit(f);
            forge
        };
    put(
        "block-size-8192.bin",
        &edited(&aosp_full, |m| m.set_block_size(8192)),
        "err:21 err:21",
    );
    put(
        "dst-extent-overflow.bin",
        &edited(&aosp_delta, |m| {
            m.partitions[0].operations[0].dst_extents[0].set_start_block(u64::MAX - 1)
        }),
        "err:21 err:21",
    );
    put(
        "src-extent-past-end.bin",
        &edited(&aosp_delta, |m| {
            let op = m.partitions[0]
                .operations
                .iter_mut()
                .find(|op| !op.src_extents.is_empty())
                .unwrap();
            op.src_extents[0].set_num_blocks(1 << 40);
        }),
        "err:21 err:21",
    );
    put(
        "unknown-op-type.bin",
        &edited(&aosp_full, |m| {
            m.partitions[0].operations[0].type_ = Some(protobuf::EnumOrUnknown::from_i32(77))
        }),
        "err:32 err:32",
    );
    put(
        "puffdiff.bin",
        &edited(&aosp_delta, |m| {
            m.partitions[0].operations[0].set_type(Type::PUFFDIFF)
        }),
        "ok:2:15 err:14",
    );
    put(
        "blobs-not-contiguous.bin",
        &edited(&aosp_full, |m| {
            m.partitions[0].operations[1].set_data_offset(1)
        }),
        "err:21 err:21",
    );
    put(
        "bad-partition-name.bin",
        &edited(&aosp_full, |m| {
            m.partitions[0].set_partition_name("../boot".into())
        }),
        "err:21 err:21",
    );
    put(
        "duplicate-partition.bin",
        &edited(&aosp_full, |m| {
            let copy = m.partitions[0].clone();
            m.partitions.push(copy);
        }),
        "err:21 err:21",
    );
    put(
        "minor-version-99.bin",
        &edited(&aosp_delta, |m| m.set_minor_version(99)),
        "err:32 err:32",
    );
    // Complete payloads as they are: no blob at all, so the known-size path accepts them too.
    let mut zeros = aosp_full.clone();
    zeros.edit_ops(|_, _, op, blob| {
        op.set_type(Type::ZERO);
        blob.clear();
    });
    put("aosp-full-all-zero-ops.bin", &zeros, "ok:2:3 ok:2:3");
    let mut garbage = aosp_full.clone();
    garbage.manifest = b"\x6a\xff\xff\xff\xff\x0f".to_vec();
    put("manifest-not-protobuf.bin", &garbage, "err:21 err:21");
    let mut magic = aosp_full.clone();
    magic.major_version = 3;
    put("major-version-3.bin", &magic, "err:32 err:32");

    std::fs::write(expected_path(), list).unwrap();
}

/// Header, manifest and metadata signature: what the engine reads before any blob.
fn metadata_of(forge: &Forge) -> Vec<u8> {
    let mut out = forge.metadata();
    out.extend_from_slice(&forge.metadata_signature);
    out
}

/// Small signed full and delta payloads from the library's builder.
fn our_payloads(dir: &Path) -> (Forge, Forge) {
    let mut rng = common::Rng(0xf022_5eed);
    let old = common::mixed_image(&mut rng, 40);
    let mut new = old.clone();
    new[4096..8192].fill(0);
    new[20 * 4096 + 7] ^= 1;
    let (o, n) = (dir.join("old.img"), dir.join("new.img"));
    std::fs::write(&o, &old).unwrap();
    std::fs::write(&n, &new).unwrap();
    let options = || BuildOptions {
        signer: Some(forge::test_key('a').0),
        threads: 1,
        ..BuildOptions::default()
    };
    let spec = |old: Option<&Path>| PartitionSpec {
        name: "system".into(),
        new: n.clone(),
        old: old.map(Path::to_owned),
        append_verity: false,
    };
    let (full, delta) = (dir.join("full.bin"), dir.join("delta.bin"));
    build::build(&[spec(None)], &options(), &full).unwrap();
    build::build(&[spec(Some(&o))], &options(), &delta).unwrap();
    (Forge::read(&full), Forge::read(&delta))
}
