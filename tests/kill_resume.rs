//! `kill -9` of a real `abupdate apply` process at random points, then resuming.
//!
//! The payload is big enough for an apply to take a while (24 MiB, 384 operations of 64 KiB,
//! most of them REPLACE, every eighth REPLACE_XZ), checkpoints come every 20 ms (4 ms for the
//! shorter delta), and the apply is killed after a random (seeded) delay, restarted, killed
//! again, until a run gets to finish. After every kill the running slot is untouched and still
//! active, the target slot is not bootable once anything was written, and the checkpoint never
//! goes backwards; after every finished run the target partitions are byte-identical to the new
//! images, the target slot is active, and the run said where it resumed. Most kills of the full
//! update (a third of the delta's) must leave work the next run skips. The full update also
//! runs on a device with dynamic partitions: `system` and `vendor` logical in `super.img`, the
//! payload carrying `dynamic_partition_metadata`, so kills also fall around the target slot's
//! metadata write. Deltas made only of PUFFDIFF, ZUCCHINI (raw, and with DEX elements) or
//! LZ4DIFF_BSDIFF operations are killed the same way, in the middle of those operations.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use abupdate::boot_control::MiscBootControl;
use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::engine::checkpoint::{Checkpoint, CheckpointStore, Phase};
use abupdate::engine::metadata::Metadata;
use abupdate::payload::proto::update_metadata::install_operation::Type;
use abupdate::payload::proto::update_metadata::{
    DeltaArchiveManifest, DynamicPartitionGroup, Extent, InstallOperation, PartitionUpdate,
};
use abupdate::payload::PayloadHeader;
use abupdate::slot::{BootControl, Slot};
use common::forge::{self, Forge};
use common::Rng;
use protobuf::Message;

const CHUNK: usize = 16 * 4096;

/// The two tests time their kills against a clean run; running them one at a time keeps
/// those times from depending on each other (CI machines have two cores).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn kill_9_at_50_points_of_a_full_update() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0001);
    let new = [
        ("system", noisy_image(&mut rng, 16 << 20)),
        ("vendor", noisy_image(&mut rng, 8 << 20)),
    ];
    let old: Vec<(&str, Vec<u8>)> = new
        .iter()
        .map(|(name, data)| (*name, vec![0x5a; data.len()]))
        .collect();
    let payload = full_payload(&new, false);
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 20, false);
    let stats = setup.kill_and_resume(&mut rng, 50, (0, 60));
    stats.check(50, 2);
}

#[test]
fn kill_9_at_20_points_of_a_full_update_into_super() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0003);
    let new = [
        ("system", noisy_image(&mut rng, 16 << 20)),
        ("vendor", noisy_image(&mut rng, 8 << 20)),
    ];
    let old: Vec<(&str, Vec<u8>)> = new
        .iter()
        .map(|(name, data)| (*name, vec![0x5a; data.len()]))
        .collect();
    let payload = full_payload(&new, true);
    // Planning and writing the target metadata take a share of this short run before the
    // first checkpoint: checkpoint often, kill later, and ask for a third of the kills (CI saw
    // 10 of 20 with 20 ms checkpoints and kills at 0-60%).
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 4, true);
    let stats = setup.kill_and_resume(&mut rng, 20, (30, 90));
    stats.check(20, 3);
}

#[test]
fn kill_9_at_24_points_of_a_delta_update() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0002);
    let old = [
        ("system", noisy_image(&mut rng, 8 << 20)),
        ("vendor", noisy_image(&mut rng, 4 << 20)),
    ];
    let mut new = old.clone();
    for (_, data) in &mut new {
        // Changed, moved, zeroed and new blocks: SOURCE_COPY, BROTLI_BSDIFF, ZERO, REPLACE*.
        for _ in 0..24 {
            let at = rng.below((data.len() - 8192) as u64) as usize;
            data[at..at + 64].fill(0x42);
        }
        data.copy_within(0..1 << 20, 2 << 20);
        data[3 << 20..(3 << 20) + 65536].fill(0);
        let mut fresh = vec![0u8; 256 << 10];
        rng.fill(&mut fresh);
        data[..256 << 10].copy_from_slice(&fresh);
    }
    let payload = delta_payload(tmp.path(), &old, &new);
    // The delta applies in a few tens of milliseconds (93 operations, mostly SOURCE_COPY):
    // checkpoint often enough that most kill points fall after one.
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 4, false);
    // A delta first hashes the source partitions, before its first checkpoint; kill later.
    let stats = setup.kill_and_resume(&mut rng, 24, (40, 90));
    // Startup and the source hashing take a larger, more variable share of this short run
    // than of the full one: ask for a third of the kills (about 3 in 4 do, locally).
    stats.check(24, 3);
}

/// An image of APK-like zips, each with its entries changed in `version`: PUFFDIFF material.
fn zips_image(rng_seed: u64, zips: usize, version: u8) -> Vec<u8> {
    use std::io::Write;
    let mut image = Vec::new();
    for z in 0..zips {
        let mut rng = Rng(rng_seed + z as u64);
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        for f in 0..4 {
            w.start_file(format!("res/{f}.xml"), opts).unwrap();
            let mut text: Vec<u8> = (0..2500)
                .flat_map(|_| format!("<item id=\"{}\"/>\n", rng.below(4000)).into_bytes())
                .collect();
            text[500 + f] = b'A' + version;
            w.write_all(&text).unwrap();
        }
        image.extend(w.finish().unwrap().into_inner());
        image.resize(image.len().next_multiple_of(4096), 0);
    }
    image.resize(image.len() + 4096, 0);
    image
}

#[test]
fn kill_9_in_puffdiff_operations() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0004);
    let (a, b) = (zips_image(7, 10, 0), zips_image(7, 10, 1));
    let len = a.len().max(b.len());
    let pad = |mut v: Vec<u8>| {
        v.resize(len, 0);
        v
    };
    let old = [("system", pad(a))];
    let new = [("system", pad(b))];
    let payload = delta_payload(tmp.path(), &old, &new);
    let puffdiffs = Forge::parse(&payload).manifest().partitions[0]
        .operations
        .iter()
        .filter(|o| o.type_() == Type::PUFFDIFF)
        .count();
    assert!(puffdiffs >= 4, "{puffdiffs} PUFFDIFF operations");
    // Every change is inside a zip, so the run is PUFFDIFF work after the source hashing.
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 4, false);
    let stats = setup.kill_and_resume(&mut rng, 6, (40, 90));
    stats.check(6, 3);
}

#[test]
fn kill_9_in_zucchini_operations() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0005);
    // 48 chunks of 256 KiB of firmware-like data, each one ZUCCHINI operation whose blob
    // AOSP's generator made (`zucchini_op gen`).
    let chunks: Vec<_> = (0..48)
        .map(|_| {
            let (o, n) = common::zucchini::raw_pair(&mut rng, 64 * 4096);
            let blob = common::zucchini::op_blob(tmp.path(), &o, &n, "gen");
            (o, n, blob)
        })
        .collect();
    let (payload, old, new) = zucchini_delta(&chunks);
    let old = [("system", old)];
    let new = [("system", new)];
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 4, false);
    // Each operation takes a few milliseconds, and a run's first ~20 ms (start, signature,
    // source hashes) leave nothing to resume. With 12 operations a quiet machine's run took
    // 45 ms and too few kills came after a checkpoint; 48 make it ~120 ms.
    let stats = setup.kill_and_resume(&mut rng, 6, (40, 90));
    stats.check(6, 3);
}

#[test]
fn kill_9_in_zucchini_operations_with_dex_elements() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0007);
    // Two builds of a generated DEX program (`tests/dex_gen.py`, checked by Debian's
    // `dexdump`) per DEX version, each pair one ZUCCHINI operation whose blob AOSP's
    // generator made (`zucchini_op gen`) with a DEX element: applying it disassembles both
    // DEX files and corrects their references. Small programs (30-50 classes): unoptimized,
    // an operation takes ~0.1 s (300 classes took ~2 s and made a clean run 30 s); the four
    // pairs repeat to make 12 operations, a ~1.1-1.5 s run.
    let mut pairs = vec![];
    for (version, classes) in DEX_PAIRS {
        let (o, n) = common::zucchini::dex_pair(tmp.path(), version, classes, false);
        let (o, n) = (common::zucchini::padded(&o), common::zucchini::padded(&n));
        let blob = common::zucchini::op_blob(tmp.path(), &o, &n, "gen");
        assert_eq!(dex_elements(&blob), 1, "DEX 0{version}, {classes} classes");
        eprintln!(
            "DEX 0{version}, {classes} classes: {} -> {} bytes, blob {} bytes",
            o.len(),
            n.len(),
            blob.len()
        );
        pairs.push((o, n, blob));
    }
    let chunks: Vec<_> = (0..DEX_OPERATIONS)
        .map(|i| pairs[i % pairs.len()].clone())
        .collect();
    let (payload, old, new) = zucchini_delta(&chunks);
    let old = [("system", old)];
    let new = [("system", new)];
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 4, false);
    // Kills from 30% of a clean run: after the first operation's checkpoint, and before the
    // end of the last operation on a run faster than the clean ones.
    let stats = setup.kill_and_resume(&mut rng, 8, (30, 80));
    stats.check(8, 3);
    // After the source hashing the run is these operations: most kills came in the middle of
    // them (a checkpoint past the first, before the last).
    assert!(
        stats.kills_mid_operations * 2 > stats.kills,
        "only {} of {} kills fell among the operations",
        stats.kills_mid_operations,
        stats.kills
    );
}

/// DEX versions and class counts of the DEX test's pairs.
const DEX_PAIRS: [(u32, usize); 4] = [(35, 40), (37, 30), (38, 50), (39, 40)];
/// ZUCCHINI operations in the DEX test's payload.
const DEX_OPERATIONS: usize = 12;

/// How many elements of the ZUCCHINI operation blob `blob` (brotli of a patch) are DEX.
fn dex_elements(blob: &[u8]) -> usize {
    use std::io::Read;
    let mut patch = vec![];
    brotli::Decompressor::new(blob, 4096)
        .read_to_end(&mut patch)
        .unwrap();
    let patch = abupdate::zucchini::Patch::parse(&patch).unwrap();
    patch
        .elements
        .iter()
        .filter(|e| e.exe_type == abupdate::zucchini::ExeType::Executable(*b"DEX "))
        .count()
}

#[test]
fn kill_9_in_lz4diff_operations() {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x6b11_1e9a_0000_0006);
    // 24 LZ4-compressed files of ~64 KiB of text in 4 KiB clusters (as EROFS stores them),
    // each changed in a few places and turned into one LZ4DIFF_BSDIFF operation by
    // `lz4diff`, in a minor-version-9 delta written here (the builder makes no LZ4DIFF).
    use abupdate::lz4diff::{self, Algorithm, Block, CompressionInfo, Inner, Patch};
    fn clusters(plain: &mut Vec<u8>) -> (CompressionInfo, Vec<u8>) {
        let (mut blocks, mut at) = (vec![], 0usize);
        loop {
            let rest = plain.len() - at;
            if rest <= 4096 {
                // A stored last cluster, its zeros part of the file (as update_engine counts).
                plain.resize(at + 4096, 0);
                blocks.push(Block {
                    uncompressed_offset: at as u64,
                    uncompressed_length: 4096,
                    compressed_length: 4096,
                    ..Default::default()
                });
                break;
            }
            let (_, n) = abupdate::lz4::compress_dest_size(&plain[at..], 4096).unwrap();
            blocks.push(Block {
                uncompressed_offset: at as u64,
                uncompressed_length: n as u64,
                compressed_length: 4096,
                ..Default::default()
            });
            at += n;
        }
        let info = CompressionInfo {
            algorithm: Algorithm::Lz4,
            blocks,
            zero_padding: true,
        };
        let image = lz4diff::compress(plain, &info).unwrap();
        (info, image)
    }
    let mut m = DeltaArchiveManifest::new();
    m.set_block_size(4096);
    m.set_minor_version(9);
    let (mut old, mut new, mut blobs) = (vec![], vec![], vec![]);
    let mut p = PartitionUpdate::new();
    p.set_partition_name("system".into());
    for _ in 0..24 {
        let mut o = vec![];
        while o.len() < 64_000 {
            o.extend_from_slice(
                format!("key{} = value{}\n", rng.below(500), rng.below(90)).as_bytes(),
            );
        }
        let mut n = o.clone();
        for _ in 0..4 {
            let at = rng.below(n.len() as u64 - 64) as usize;
            n[at..at + 8].copy_from_slice(b"CHANGED!");
        }
        let (src, o_img) = clusters(&mut o);
        let (dst, n_img) = clusters(&mut n);
        let inner = abupdate::bsdiff::make_bsdf2(&o, &n).unwrap();
        let blob = Patch::encode(&src, &dst, Inner::Bsdiff, &inner).unwrap();
        let mut op = InstallOperation::new();
        op.set_type(Type::LZ4DIFF_BSDIFF);
        op.set_data_offset(blobs.len() as u64);
        op.set_data_length(blob.len() as u64);
        op.set_data_sha256_hash(forge::sha256(&blob).to_vec());
        op.set_src_sha256_hash(forge::sha256(&o_img).to_vec());
        let mut e = Extent::new();
        e.set_start_block(old.len() as u64 / 4096);
        e.set_num_blocks(o_img.len() as u64 / 4096);
        op.src_extents.push(e);
        let mut e = Extent::new();
        e.set_start_block(new.len() as u64 / 4096);
        e.set_num_blocks(n_img.len() as u64 / 4096);
        op.dst_extents.push(e);
        p.operations.push(op);
        blobs.extend_from_slice(&blob);
        old.extend_from_slice(&o_img);
        new.extend_from_slice(&n_img);
    }
    let payload = system_delta(m, p, blobs, &old, &new);
    let old = [("system", old)];
    let new = [("system", new)];
    let setup = Setup::new(tmp.path(), &old, &new, &payload, 4, false);
    let stats = setup.kill_and_resume(&mut rng, 6, (40, 90));
    stats.check(6, 3);
}

/// A device template, the payload and what applying it must produce.
struct Setup<'a> {
    root: PathBuf,
    template: PathBuf,
    payload: PathBuf,
    properties: PathBuf,
    key: PathBuf,
    new: &'a [(&'a str, Vec<u8>)],
    /// Operations in the payload.
    operations: u32,
    /// SHA-256 of every partition of slot A.
    source: Vec<(String, [u8; 32])>,
    /// `--checkpoint-interval-ms`.
    checkpoint_ms: u32,
}

#[derive(Debug, Default)]
struct Stats {
    kills: usize,
    rounds: usize,
    /// Kills after which a checkpoint let the next run skip work.
    kills_with_progress: usize,
    /// Kills whose checkpoint was past the first operation but before the last.
    kills_mid_operations: usize,
    /// Rounds whose final run reported resuming, as the checkpoint said it would.
    resumed_finishes: usize,
    clean_run: Duration,
}

impl Stats {
    /// At least `kills` kills, and more than one in `share` of them left work to skip.
    fn check(&self, kills: usize, share: usize) {
        eprintln!("{self:?}");
        assert!(self.kills >= kills);
        assert!(
            self.kills_with_progress * share > self.kills,
            "only {} of {} kills left work to skip",
            self.kills_with_progress,
            self.kills
        );
        assert!(self.resumed_finishes >= 1, "no finishing run resumed");
    }
}

impl<'a> Setup<'a> {
    fn new(
        root: &Path,
        old: &[(&str, Vec<u8>)],
        new: &'a [(&'a str, Vec<u8>)],
        payload: &[u8],
        checkpoint_ms: u32,
        super_device: bool,
    ) -> Setup<'a> {
        let template = root.join("template");
        std::fs::create_dir(&template).unwrap();
        if super_device {
            // lpmake's A/B layout: `<name>_a` holding the old images, `<name>_b` empty.
            let sizes: Vec<(&str, u64)> = old.iter().map(|(n, d)| (*n, d.len() as u64)).collect();
            let layout = abupdate::build::super_image::ab_layout(
                64 << 20,
                "main",
                SUPER_GROUP,
                &sizes,
                false,
            );
            let names: Vec<String> = old.iter().map(|(n, _)| format!("{n}_a")).collect();
            let images: Vec<(&str, &[u8])> = names
                .iter()
                .zip(old)
                .map(|(n, (_, d))| (n.as_str(), d.as_slice()))
                .collect();
            abupdate::build::super_image::write(&template.join("super.img"), &layout, &images)
                .unwrap();
        } else {
            for ((name, old), (_, new)) in old.iter().zip(new) {
                common::put_image(&template, name, 'a', old, old.len() as u64);
                common::put_image(&template, name, 'b', &[], new.len() as u64);
            }
        }
        MiscBootControl::create_image(&template.join("misc.img"), Slot::A).unwrap();
        let payload_path = root.join("payload.bin");
        std::fs::write(&payload_path, payload).unwrap();
        let properties = root.join("payload_properties.txt");
        std::fs::write(&properties, forge::properties(payload).join("\n")).unwrap();
        let source = old
            .iter()
            .map(|(name, data)| (name.to_string(), forge::sha256(data)))
            .collect();
        Setup {
            root: root.to_owned(),
            template,
            payload: payload_path,
            properties,
            key: forge::test_key('a').1,
            new,
            operations: count_operations(payload),
            source,
            checkpoint_ms,
        }
    }

    /// Rounds of: fresh device, runs killed after random delays until one finishes. Goes on
    /// until `kills` kills happened; each round's last run is left to finish. Delays are drawn
    /// from `window`, in percent of an uninterrupted run's time.
    fn kill_and_resume(&self, rng: &mut Rng, kills: usize, window: (u64, u64)) -> Stats {
        let mut stats = Stats::default();
        // Uninterrupted runs set the time scale of the kill delays: the median of three, since
        // one run can be several times slower than the rest (a cold cache, a busy machine),
        // and kills timed from it would come after most runs have finished.
        let mut clean: Vec<Duration> = (0..3)
            .map(|i| {
                let dev = self.fresh_device(&format!("clean{i}"));
                let started = Instant::now();
                let out = self.spawn(&dev).wait_with_output().unwrap();
                let took = started.elapsed();
                assert!(
                    out.status.success(),
                    "clean run: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                self.check_finished(&dev, None, &String::from_utf8_lossy(&out.stdout));
                took
            })
            .collect();
        clean.sort();
        stats.clean_run = clean[1];
        let ms = stats.clean_run.as_millis() as u64;
        let (min_delay, spread) = (
            ms * window.0 / 100,
            (ms * (window.1 - window.0) / 100).max(1),
        );

        while stats.kills < kills {
            stats.rounds += 1;
            let dev = self.fresh_device(&format!("round{}", stats.rounds));
            let mut last: Option<Checkpoint> = None;
            loop {
                let finish = stats.kills >= kills && last.is_some();
                let mut child = self.spawn(&dev);
                let deadline = (!finish)
                    .then(|| Instant::now() + Duration::from_millis(min_delay + rng.below(spread)));
                match wait_until(&mut child, deadline) {
                    Some(status) => {
                        let out = child.wait_with_output().unwrap();
                        assert!(
                            status.success(),
                            "run failed: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                        let resumed = self.check_finished(
                            &dev,
                            last.as_ref(),
                            &String::from_utf8_lossy(&out.stdout),
                        );
                        stats.resumed_finishes += usize::from(resumed);
                        break;
                    }
                    None => {
                        child.kill().unwrap();
                        child.wait().unwrap();
                        stats.kills += 1;
                        let cp = self.check_killed(&dev, last.as_ref());
                        stats.kills_with_progress +=
                            usize::from(cp.as_ref().is_some_and(skips_work));
                        stats.kills_mid_operations += usize::from(cp.as_ref().is_some_and(|cp| {
                            cp.phase == Phase::Writing
                                && (1..self.operations).contains(&cp.next_operation)
                        }));
                        if cp.as_ref().is_some_and(|cp| cp.phase == Phase::Done)
                            && active(&dev) == Slot::B
                        {
                            // Killed after its very last step: the update is complete.
                            self.check_target(&dev);
                            break;
                        }
                        last = cp;
                    }
                }
            }
        }
        stats
    }

    fn spawn(&self, dev: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_abupdate"))
            .arg("apply")
            .arg("--device")
            .arg(dev)
            .arg("--key")
            .arg(&self.key)
            .arg("--properties")
            .arg(&self.properties)
            .args(["--threads", "2", "--checkpoint-interval-ms"])
            .arg(self.checkpoint_ms.to_string())
            .arg(&self.payload)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn fresh_device(&self, name: &str) -> PathBuf {
        let dev = self.root.join(name);
        std::fs::create_dir(&dev).unwrap();
        for entry in std::fs::read_dir(&self.template).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dev.join(entry.file_name())).unwrap();
        }
        dev
    }

    /// After a kill: the running slot untouched and active, the target not bootable once a
    /// checkpoint exists, the checkpoint no older than the one before. Returns the checkpoint.
    fn check_killed(&self, dev: &Path, before: Option<&Checkpoint>) -> Option<Checkpoint> {
        self.check_source(dev);
        let cp = FileCheckpointStore::new(dev.join("state"))
            .unwrap()
            .load()
            .unwrap();
        let boot = MiscBootControl::open_device_dir(dev, None).unwrap();
        if let Some(cp) = &cp {
            assert!(
                !boot.is_bootable(Slot::B).unwrap() || cp.phase == Phase::Done,
                "target bootable mid-update"
            );
            if let Some(before) = before {
                assert!(
                    progress(cp) >= progress(before),
                    "checkpoint went back: {before:?} -> {cp:?}"
                );
            }
            if cp.phase != Phase::Done {
                assert_eq!(
                    boot.active_slot().unwrap(),
                    Slot::A,
                    "slot switched before the end"
                );
            }
        } else {
            assert_eq!(
                boot.active_slot().unwrap(),
                Slot::A,
                "slot switched before the end"
            );
        }
        cp
    }

    /// After a finished run: the new images in the target slot, now active, the source
    /// untouched, and the run's report of where it resumed matching the last checkpoint.
    /// Returns whether it resumed.
    fn check_finished(&self, dev: &Path, last: Option<&Checkpoint>, stdout: &str) -> bool {
        self.check_source(dev);
        self.check_target(dev);
        assert_eq!(active(dev), Slot::B, "slot not switched at the end");
        match last.filter(|cp| skips_work(cp)) {
            Some(cp) => {
                // It applied only what was left: fewer operations than the payload has.
                let n = cp.next_operation;
                let said = format!(
                    "{} operations (resumed at operation {n})",
                    self.operations - n
                );
                assert!(stdout.contains(&said), "expected {said:?} in {stdout:?}");
                true
            }
            None => {
                assert!(
                    !stdout.contains("resumed"),
                    "fresh run claims to resume: {stdout}"
                );
                false
            }
        }
    }

    fn check_source(&self, dev: &Path) {
        for (name, hash) in &self.source {
            let data = read_partition(dev, name, Slot::A);
            assert!(forge::sha256(&data) == *hash, "source image {name} changed");
        }
    }

    fn check_target(&self, dev: &Path) {
        for (name, data) in self.new {
            let written = read_partition(dev, name, Slot::B);
            assert!(written == *data, "target {name} differs from the new image");
        }
    }
}

/// A partition of `slot` as that slot boots it: its file, or the logical partition its own
/// metadata slot in `super.img` maps.
fn read_partition(dev: &Path, name: &str, slot: Slot) -> Vec<u8> {
    let part = abupdate::device::Device::host(dev, Slot::A)
        .read_only(name, slot)
        .unwrap_or_else(|e| panic!("{name} of slot {slot}: {e}"));
    let mut data = vec![0u8; part.size() as usize];
    part.read_at(&mut data, 0).unwrap();
    data
}

/// The group of the super device's logical partitions.
const SUPER_GROUP: u64 = 28 << 20;

fn count_operations(payload: &[u8]) -> u32 {
    let size = Some(payload.len() as u64);
    let needed = Metadata::needed(payload, size).unwrap() as usize;
    let metadata = Metadata::verify(
        payload[..needed].to_vec(),
        size,
        &Default::default(),
        &abupdate::payload::keys::TrustedKeys::accept_unsigned(),
    );
    metadata.unwrap().manifest.operation_count() as u32
}

/// Whether the next run starts later than from scratch.
fn skips_work(cp: &Checkpoint) -> bool {
    cp.next_operation > 0 || cp.phase > Phase::Writing
}

fn progress(cp: &Checkpoint) -> (Phase, u32, u32) {
    (cp.phase, cp.next_operation, cp.verified_partitions)
}

fn active(dev: &Path) -> Slot {
    MiscBootControl::open_device_dir(dev, None)
        .unwrap()
        .active_slot()
        .unwrap()
}

/// Waits for the child to exit, until `deadline` if given. `None`: still running.
fn wait_until(child: &mut Child, deadline: Option<Instant>) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Random bytes, but every eighth 64 KiB chunk is text (which the payload stores as XZ).
fn noisy_image(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    for (i, chunk) in data.chunks_mut(CHUNK).enumerate() {
        if i % 8 == 7 {
            for (j, b) in chunk.iter_mut().enumerate() {
                *b = if j % 61 == 60 {
                    b'\n'
                } else {
                    b"abcdefgh "[(rng.next() % 9) as usize]
                };
            }
        } else {
            rng.fill(chunk);
        }
    }
    data
}

/// A signed full payload with one operation per 64 KiB chunk: REPLACE_XZ for the text chunks,
/// REPLACE for the random ones (cheap to apply: the run time is I/O and checkpoints). With
/// `dynamic`, every partition is in the group `main` of `dynamic_partition_metadata`.
fn full_payload(images: &[(&str, Vec<u8>)], dynamic: bool) -> Vec<u8> {
    let mut m = DeltaArchiveManifest::new();
    m.set_block_size(4096);
    m.set_minor_version(0);
    if dynamic {
        let mut group = DynamicPartitionGroup::new();
        group.set_name("main".into());
        group.set_size(SUPER_GROUP);
        group.partition_names = images.iter().map(|(n, _)| n.to_string()).collect();
        m.dynamic_partition_metadata
            .mut_or_insert_default()
            .groups
            .push(group);
    }
    let mut blobs = Vec::new();
    for (name, data) in images {
        let mut p = PartitionUpdate::new();
        p.set_partition_name(name.to_string());
        for (i, chunk) in data.chunks(CHUNK).enumerate() {
            let (kind, blob) = if i % 8 == 7 {
                let xz = abupdate::build::ops::compress_xz(chunk).unwrap();
                assert!(xz.len() < chunk.len() / 2);
                (Type::REPLACE_XZ, xz)
            } else {
                (Type::REPLACE, chunk.to_vec())
            };
            let mut op = InstallOperation::new();
            op.set_type(kind);
            op.set_data_offset(blobs.len() as u64);
            op.set_data_length(blob.len() as u64);
            op.set_data_sha256_hash(forge::sha256(&blob).to_vec());
            let mut e = Extent::new();
            e.set_start_block((i * CHUNK / 4096) as u64);
            e.set_num_blocks((chunk.len() / 4096) as u64);
            op.dst_extents.push(e);
            p.operations.push(op);
            blobs.extend_from_slice(&blob);
        }
        let info = p.new_partition_info.mut_or_insert_default();
        info.set_size(data.len() as u64);
        info.set_hash(forge::sha256(data).to_vec());
        m.partitions.push(p);
    }
    let bytes = signed(&m, blobs);
    assert!(PayloadHeader::parse(&bytes, Some(bytes.len() as u64)).is_ok());
    bytes
}

/// The signed minor-version-8 delta of `system` with one ZUCCHINI operation per
/// `(old, new, blob)` chunk (whole blocks; `blob` is AOSP's `zucchini_op gen` from `old` to
/// `new`), the chunks laid end to end in both images, and those old and new images. Written
/// here: the builder makes no ZUCCHINI operations.
fn zucchini_delta(chunks: &[(Vec<u8>, Vec<u8>, Vec<u8>)]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut m = DeltaArchiveManifest::new();
    m.set_block_size(4096);
    m.set_minor_version(8);
    let (mut old, mut new, mut blobs) = (vec![], vec![], vec![]);
    let mut p = PartitionUpdate::new();
    p.set_partition_name("system".into());
    for (o, n, blob) in chunks {
        let mut op = InstallOperation::new();
        op.set_type(Type::ZUCCHINI);
        op.set_data_offset(blobs.len() as u64);
        op.set_data_length(blob.len() as u64);
        op.set_data_sha256_hash(forge::sha256(blob).to_vec());
        op.set_src_sha256_hash(forge::sha256(o).to_vec());
        for (extents, image, chunk) in [
            (&mut op.src_extents, &mut old, o),
            (&mut op.dst_extents, &mut new, n),
        ] {
            assert_eq!(chunk.len() % 4096, 0, "a chunk of whole blocks");
            let mut e = Extent::new();
            e.set_start_block(image.len() as u64 / 4096);
            e.set_num_blocks(chunk.len() as u64 / 4096);
            extents.push(e);
            image.extend_from_slice(chunk);
        }
        p.operations.push(op);
        blobs.extend_from_slice(blob);
    }
    let payload = system_delta(m, p, blobs, &old, &new);
    (payload, old, new)
}

/// The payload of manifest `m` and `blobs`, signed with test key `a`.
/// The signed payload of a delta of one partition, `system`, whose operations are in `p`
/// (its old and new sizes and hashes are filled in here).
fn system_delta(
    mut m: DeltaArchiveManifest,
    mut p: PartitionUpdate,
    blobs: Vec<u8>,
    old: &[u8],
    new: &[u8],
) -> Vec<u8> {
    for (info, data) in [
        (p.old_partition_info.mut_or_insert_default(), old),
        (p.new_partition_info.mut_or_insert_default(), new),
    ] {
        info.set_size(data.len() as u64);
        info.set_hash(forge::sha256(data).to_vec());
    }
    m.partitions.push(p);
    signed(&m, blobs)
}

fn signed(m: &DeltaArchiveManifest, blobs: Vec<u8>) -> Vec<u8> {
    let mut forge = Forge {
        major_version: abupdate::payload::header::SUPPORTED_MAJOR_VERSION,
        manifest: m.write_to_bytes().unwrap(),
        metadata_signature: vec![],
        blobs,
        payload_signature: vec![],
        trailer: vec![],
    };
    forge.sign(&forge::test_key('a').0).to_bytes()
}

/// A signed delta payload made by the library's builder.
fn delta_payload(dir: &Path, old: &[(&str, Vec<u8>)], new: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    let specs: Vec<PartitionSpec> = old
        .iter()
        .zip(new)
        .map(|((name, old), (_, new))| {
            let (o, n) = (
                images.join(format!("{name}_old.img")),
                images.join(format!("{name}_new.img")),
            );
            std::fs::write(&o, old).unwrap();
            std::fs::write(&n, new).unwrap();
            PartitionSpec {
                name: name.to_string(),
                new: n,
                old: Some(o),
                append_verity: false,
            }
        })
        .collect();
    let options = BuildOptions {
        signer: Some(forge::test_key('a').0),
        threads: 2,
        ..BuildOptions::default()
    };
    let out = dir.join("delta.bin");
    let report = build::build(&specs, &options, &out).unwrap();
    assert!(report.manifest.is_delta());
    std::fs::read(out).unwrap()
}
