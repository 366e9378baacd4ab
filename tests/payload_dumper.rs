//! Full payloads made by `abupdate payload build` read back by an independent implementation:
//! PyPI `android-payload-dumper` (command `payload-dumper`) extracts every partition, checking
//! each operation's `data_sha256_hash` and each image's `new_partition_info.hash`, and the
//! images must be the ones the payload was built from. The tool must be installed: this test
//! fails, not skips, without it (`pip install android-payload-dumper`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use abupdate::engine::metadata::Metadata;
use abupdate::payload::OpKind;
use common::Rng;

const TOOL: &str = "payload-dumper";

#[test]
fn payload_dumper_extracts_our_full_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let images = images(tmp.path());
    let payload = build(tmp.path(), &images);

    // The payload exercises every compressor a full payload may use.
    let bytes = std::fs::read(&payload).unwrap();
    let metadata = metadata(&bytes);
    let kinds: BTreeMap<OpKind, usize> = metadata
        .manifest
        .partitions
        .iter()
        .flat_map(|p| &p.operations)
        .fold(BTreeMap::new(), |mut kinds, op| {
            *kinds.entry(op.kind).or_default() += 1;
            kinds
        });
    for kind in [OpKind::Replace, OpKind::ReplaceXz, OpKind::ReplaceBz] {
        assert!(
            kinds.contains_key(&kind),
            "no {} operation in {kinds:?}",
            kind.name()
        );
    }

    let out = tmp.path().join("out");
    let run = dumper(&[
        payload.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
        "-j".as_ref(),
        "2".as_ref(),
    ]);
    assert!(
        run.status.success(),
        "{TOOL} failed: {}",
        String::from_utf8_lossy(&run.stdout)
    );
    for (name, data) in &images {
        let extracted = std::fs::read(out.join(format!("{name}.img")))
            .unwrap_or_else(|e| panic!("{TOOL} wrote no {name}.img: {e}"));
        assert_eq!(extracted.len(), data.len(), "{name}: size");
        assert!(
            extracted == *data,
            "{name}: {TOOL} extracted different bytes"
        );
    }

    // Its reading of the manifest agrees with ours.
    let list = dumper(&[payload.as_os_str(), "--list".as_ref(), "--json".as_ref()]);
    assert!(list.status.success());
    let listed = String::from_utf8(list.stdout).unwrap();
    for p in &metadata.manifest.partitions {
        let entry = format!(
            "\"name\": \"{}\",\n      \"operations\": {},\n      \"size\": {},",
            p.name,
            p.operations.len(),
            p.new_info.size
        );
        assert!(
            listed.contains(&entry),
            "{TOOL} lists {listed}, lacking {entry}"
        );
    }
}

/// The oracle is not a rubber stamp: the same payload with one blob byte changed is refused.
#[test]
fn payload_dumper_refuses_a_corrupted_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let images = images(tmp.path());
    let payload = build(tmp.path(), &images);
    let mut bytes = std::fs::read(&payload).unwrap();
    let metadata = metadata(&bytes);
    let at = metadata.header.data_offset() as usize + metadata.manifest.blobs_size as usize / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&payload, &bytes).unwrap();
    let out = tmp.path().join("out");
    let run = dumper(&[payload.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    assert!(!run.status.success(), "{TOOL} accepted a corrupted blob");
    assert!(String::from_utf8_lossy(&run.stdout).contains("hash mismatch"));
}

/// Three partitions: mixed content spanning two 2 MiB chunks (REPLACE_XZ), word-like text
/// (bzip2 wins), and random bytes (stored as REPLACE).
fn images(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut rng = Rng(0xd04d_00d0);
    let system = common::mixed_image(&mut rng, 768);
    let words: Vec<Vec<u8>> = (0..3000)
        .map(|_| {
            (0..2 + rng.below(8))
                .map(|_| b"etaoinshrdlucmfwypvbgkjqxz"[rng.below(26) as usize])
                .collect()
        })
        .collect();
    let mut text = Vec::with_capacity(1 << 20);
    while text.len() < 1 << 20 {
        text.extend_from_slice(&words[rng.below(words.len() as u64) as usize]);
        text.push(b' ');
    }
    text.truncate(1 << 20);
    let mut random = vec![0u8; 32 * 4096];
    rng.fill(&mut random);
    let images = vec![
        ("system".to_owned(), system),
        ("text".to_owned(), text),
        ("random".to_owned(), random),
    ];
    for (name, data) in &images {
        std::fs::write(dir.join(format!("{name}.img")), data).unwrap();
    }
    images
}

/// `abupdate payload build`, signed with the test key.
fn build(dir: &Path, images: &[(String, Vec<u8>)]) -> PathBuf {
    let payload = dir.join("payload.bin");
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/payload/testkey_a.pem");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abupdate"));
    cmd.args(["payload", "build", "--out"])
        .arg(&payload)
        .arg("--key")
        .arg(key);
    for (name, _) in images {
        cmd.arg("--partition").arg(format!(
            "{name}={}",
            dir.join(format!("{name}.img")).display()
        ));
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "payload build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    payload
}

fn metadata(bytes: &[u8]) -> Metadata {
    let needed = Metadata::needed(bytes, Some(bytes.len() as u64)).unwrap() as usize;
    Metadata::verify(
        bytes[..needed].to_vec(),
        Some(bytes.len() as u64),
        &Default::default(),
        &abupdate::payload::keys::TrustedKeys::accept_unsigned(),
    )
    .unwrap()
}

fn dumper(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(TOOL)
        .args(args)
        // A plain, wide console: no colour codes or wrapping in what the test reads.
        .env("NO_COLOR", "1")
        .env("COLUMNS", "200")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {TOOL} ({e}): pip install android-payload-dumper"))
}
