//! Virtual A/B snapshot updates on a host device directory (`abupdate cow update`, then
//! `abupdate cow merge`), checked against AOSP's libsnapshot_cow tools built from AOSP source
//! (`../shared/tools/aosp/bin`): a signed delta payload carrying `merge_operations` (COW_COPY
//! for its SOURCE_COPY operations, COW_XOR for its diff operations) is written as one v3 COW
//! per partition; `inspect_cow` accepts each COW and finds its merge sequence consistent;
//! `applycow` over the running slot's image (the snapshot's base) yields exactly the new image,
//! both as the snapshot's view and as AOSP's in-place merge; our own merge, in place over a copy
//! of the base, yields the new image too. The same with `kill -9` at random points of the COW
//! writing and of the merge: every run resumes and ends byte-identical.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::checkpoint_store::FileCheckpointStore;
use abupdate::cow::CowReader;
use abupdate::engine::checkpoint::CheckpointStore;
use abupdate::engine::END_LABEL;
use common::forge::{self, Forge};
use common::Rng;

const BS: usize = 4096;

/// An old image and a new one made from it: shifted runs (copies that must merge in order), a
/// swap (a cycle), small edits (diffs), zeroed blocks, fresh data and a longer tail.
fn image_pair(rng: &mut Rng, blocks: usize) -> (Vec<u8>, Vec<u8>) {
    let old = common::mixed_image(rng, blocks);
    let mut new = old.clone();
    // Everything moves down by 3 blocks in the first half: long overlapping copies.
    let half = blocks / 2;
    new[..(half - 3) * BS].copy_from_slice(&old[3 * BS..half * BS]);
    // A swap of two runs.
    let (a, b) = (half + 10, half + 40);
    let (x, y) = (
        old[a * BS..(a + 8) * BS].to_vec(),
        old[b * BS..(b + 8) * BS].to_vec(),
    );
    new[a * BS..(a + 8) * BS].copy_from_slice(&y);
    new[b * BS..(b + 8) * BS].copy_from_slice(&x);
    // Small edits over a run: diff operations.
    for i in half + 60..half + 120 {
        new[i * BS + 100] ^= 0x5a;
        new[i * BS + 3000] = new[i * BS + 3000].wrapping_add(7);
    }
    new[(half + 130) * BS..(half + 150) * BS].fill(0);
    rng.fill(&mut new[(half + 160) * BS..(half + 200) * BS]);
    let mut tail = vec![0u8; 32 * BS];
    for blk in tail.chunks_mut(BS).step_by(2) {
        common::text_block(rng, blk);
    }
    new.extend_from_slice(&tail);
    (old, new)
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    dev: PathBuf,
    key: PathBuf,
    payload: PathBuf,
    images: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
}

impl Setup {
    fn new(seed: u64, blocks: usize) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        let dev = root.join("dev");
        std::fs::create_dir(&dev).unwrap();
        let mut rng = Rng(seed);
        let mut images = Vec::new();
        let mut specs = Vec::new();
        for (name, n) in [("system", blocks), ("vendor", blocks / 2)] {
            let (old, new) = image_pair(&mut rng, n);
            let (o, nw) = (
                root.join(format!("{name}_old.img")),
                root.join(format!("{name}.img")),
            );
            std::fs::write(&o, &old).unwrap();
            std::fs::write(&nw, &new).unwrap();
            std::fs::write(dev.join(format!("{name}_a.img")), &old).unwrap();
            specs.push(PartitionSpec {
                name: name.to_string(),
                new: nw,
                old: Some(o),
                append_verity: false,
            });
            images.push((name, old, new));
        }
        let (signer, key) = forge::test_key('a');
        let options = BuildOptions {
            signer: Some(forge::test_key('a').0),
            threads: 2,
            ..BuildOptions::default()
        };
        let built = root.join("delta.bin");
        build::build(&specs, &options, &built).unwrap();
        let mut f = Forge::read(&built);
        let xor = f.add_merge_operations();
        assert!(xor > 0, "the payload has no diff operations to XOR");
        f.sign(&signer);
        let payload = root.join("payload.bin");
        std::fs::write(&payload, f.to_bytes()).unwrap();
        Setup {
            _tmp: tmp,
            root,
            dev,
            key,
            payload,
            images,
        }
    }

    fn snapshots(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn spawn_update(&self, snaps: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_abupdate"))
            .args(["cow", "update", "--checkpoint-ms", "2", "--device"])
            .arg(&self.dev)
            .arg("--snapshots")
            .arg(snaps)
            .arg("--key")
            .arg(&self.key)
            .arg(&self.payload)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Each COW: AOSP's tools accept it and make the new image from the base, the end label is
    /// its last resume point, and our merge over a copy of the base yields the new image.
    fn check(&self, snaps: &Path) {
        for (name, old, new) in &self.images {
            let cow = snaps.join(format!("{name}_b.cow"));
            let bytes = std::fs::read(&cow).unwrap();
            let r = CowReader::parse(&bytes, None).unwrap();
            assert_eq!(r.header.major, 3);
            assert_eq!(r.resume_points.last().map(|p| p.label), Some(END_LABEL));
            assert!(r.ops.iter().any(|o| o.kind == abupdate::cow::OpType::Xor));
            assert!(!r.sequence.is_empty());
            let report = run(&aosp("inspect_cow"), &["--verify_merge_sequence", s(&cow)]);
            assert!(report.contains("Merge sequence is consistent."), "{report}");
            let base = self.root.join(format!("{name}_old.img"));
            let out = snaps.join("aosp.img");
            for mode in ["view", "merge"] {
                let size = new.len().to_string();
                run(
                    &aosp("applycow"),
                    &["--mode", mode, "--size", &size, s(&base), s(&cow), s(&out)],
                );
                assert!(
                    std::fs::read(&out).unwrap() == *new,
                    "{name}: applycow --mode {mode}"
                );
            }
            // Our merge, in place: the base partition grown to the new size, as super gives it.
            let merged = snaps.join(format!("{name}_base.img"));
            let mut grown = old.clone();
            grown.resize(new.len(), 0);
            std::fs::write(&merged, &grown).unwrap();
            let state = snaps.join(format!("{name}.merge"));
            let out = merge_cmd(&merged, &cow, &state).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(std::fs::read(&merged).unwrap() == *new, "{name}: our merge");
            // Merging again (a restart after the last state write) changes nothing.
            let again = merge_cmd(&merged, &cow, &state).output().unwrap();
            assert!(again.status.success());
            assert!(
                std::fs::read(&merged).unwrap() == *new,
                "{name}: merged twice"
            );
        }
    }
}

fn merge_cmd(base: &Path, cow: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_abupdate"));
    c.args(["cow", "merge", "--state"])
        .arg(state)
        .arg(base)
        .arg(cow)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn aosp(name: &str) -> PathBuf {
    common::shared::aosp_tool(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(tool: &Path, args: &[&str]) -> String {
    let out = Command::new(tool).args(args).output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool:?} {args:?}: {all}");
    all
}

fn finished(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn snapshot_update_is_accepted_by_aosp_and_merges_into_the_new_images() {
    let setup = Setup::new(0x05a9_0001, 900);
    let snaps = setup.snapshots("snaps");
    let out = setup.spawn_update(&snaps).wait_with_output().unwrap();
    assert!(finished(&out).contains("fresh start"));
    setup.check(&snaps);
    // The running slot is untouched and the target slot's own images were never written.
    for (name, old, _) in &setup.images {
        assert!(std::fs::read(setup.dev.join(format!("{name}_a.img"))).unwrap() == *old);
        assert!(!setup.dev.join(format!("{name}_b.img")).exists());
    }
}

#[test]
fn kill_9_while_writing_cows_and_while_merging_resumes_to_the_same_images() {
    let setup = Setup::new(0x05a9_0002, 1600);
    let mut rng = Rng(0x06b1_15a9);
    // A clean run's time bounds the kill delays.
    let clean = setup.snapshots("clean");
    let t = Instant::now();
    finished(&setup.spawn_update(&clean).wait_with_output().unwrap());
    let full = t.elapsed().as_millis().max(20) as u64;

    let snaps = setup.snapshots("killed");
    // Kills that left a checkpoint past the start, so the next run resumes from a label.
    let (mut kills, mut runs) = (0, 0);
    let last = loop {
        let delay = Duration::from_millis(rng.below(full));
        runs += 1;
        assert!(runs < 200, "never finished");
        match common::kill_after(setup.spawn_update(&snaps), delay) {
            None => {
                let store = FileCheckpointStore::new(snaps.join("state")).unwrap();
                if store
                    .load()
                    .unwrap()
                    .is_some_and(|cp| cp.next_operation > 0)
                {
                    kills += 1;
                }
            }
            // Runs that beat every kill past the start prove nothing: start over.
            Some(_) if kills == 0 => std::fs::remove_dir_all(&snaps).unwrap(),
            Some(out) => break finished(&out),
        }
    };
    assert!(
        last.contains("resumed at operation"),
        "{kills} kills: {last}"
    );
    setup.check(&snaps);

    // The merge, killed at random points, resumes to the new image.
    let (name, old, new) = &setup.images[0];
    let cow = snaps.join(format!("{name}_b.cow"));
    let base = snaps.join("killed_base.img");
    let mut grown = old.clone();
    grown.resize(new.len(), 0);
    std::fs::write(&base, &grown).unwrap();
    let state = snaps.join("killed.merge");
    let t = Instant::now();
    let probe = snaps.join("probe_base.img");
    std::fs::write(&probe, &grown).unwrap();
    finished(
        &merge_cmd(&probe, &cow, &snaps.join("probe.merge"))
            .output()
            .unwrap(),
    );
    let merge_ms = t.elapsed().as_millis().max(10) as u64;
    let mut merge_kills = 0;
    loop {
        let delay = Duration::from_millis(rng.below(merge_ms));
        match common::kill_after(merge_cmd(&base, &cow, &state).spawn().unwrap(), delay) {
            None => merge_kills += 1,
            Some(out) => {
                finished(&out);
                break;
            }
        }
        assert!(merge_kills < 200, "merge never finished");
    }
    assert!(
        std::fs::read(&base).unwrap() == *new,
        "merge after {merge_kills} kills"
    );
}
