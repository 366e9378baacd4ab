//! The Virtual A/B fixture: a host device directory running slot a with a real `super.img`
//! (`super_image::write`, byte-identical to lpmake's) and `ro.virtual_ab.enabled`, and a delta
//! payload with compressed snapshots (COW v3, lz4, 64 KiB, `merge_operations`); with the tools
//! the tests read its state with (AOSP's lpdump, lpunpack, applycow; protoc).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use abupdate::avb::{Algorithm, Descriptor, HashDescriptor, RingSigner, VbmetaBuilder};
use abupdate::boot_control::{vab_message, MiscBootControl};
use abupdate::build::{self, super_image, BuildOptions, PartitionSpec};
use abupdate::device::Device;
use abupdate::engine::ApplyOptions;
use abupdate::lp;
use abupdate::payload::Vabc;
use abupdate::slot::Slot;
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};

use super::forge::Forge;
use super::{mixed_image, Rng};

pub const MIB: u64 = 1 << 20;
pub const BS: usize = 4096;
pub const LOGICAL: [(&str, usize); 2] = [("system", 600), ("vendor", 300)];

pub struct Fixture {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub dev: PathBuf,
    pub payload: PathBuf,
    /// (name, old image, new image)
    pub images: Vec<(&'static str, Vec<u8>, Vec<u8>)>,
}

/// A new image from `old`: its first half moved down by 2 blocks (copies), small edits
/// (diffs: XORs), and a longer tail.
pub fn evolve(rng: &mut Rng, old: &[u8]) -> Vec<u8> {
    let blocks = old.len() / BS;
    let mut new = old.to_vec();
    let half = blocks / 2;
    new[..(half - 2) * BS].copy_from_slice(&old[2 * BS..half * BS]);
    for i in half + 10..half + 60 {
        new[i * BS + 17] ^= 0x5a;
    }
    let mut tail = vec![0u8; 24 * BS];
    rng.fill(&mut tail[..12 * BS]);
    new.extend_from_slice(&tail);
    new
}

/// A signed vbmeta (64 KiB) with a hash descriptor for each of `images` (name, contents).
pub fn vbmeta(images: &[(&str, &[u8])]) -> Vec<u8> {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/avb/testkey_rsa2048.pem");
    let key = std::fs::read(key).unwrap();
    let signer = RingSigner::from_pem(&key).unwrap();
    let mut builder = VbmetaBuilder::new(Algorithm::Sha256Rsa2048).rollback_index(1);
    for (name, data) in images {
        builder = builder.descriptor(Descriptor::Hash(HashDescriptor {
            image_size: data.len() as u64,
            hash_algorithm: "sha256".into(),
            partition_name: (*name).into(),
            salt: vec![7; 32],
            digest: super::forge::sha256(&[&[7u8; 32][..], data].concat()).to_vec(),
            flags: 0,
        }));
    }
    let mut out = builder.build(Some(&signer)).unwrap();
    out.resize(64 << 10, 0);
    out
}

impl Fixture {
    /// A device directory running slot a; Virtual A/B (super's flag and the property) or not.
    pub fn new(seed: u64, virtual_ab: bool) -> Fixture {
        Fixture::build(seed, virtual_ab, 40 * MIB, false)
    }

    /// [`Fixture::new`] with a `super` of `super_size` bytes.
    pub fn sized(seed: u64, virtual_ab: bool, super_size: u64) -> Fixture {
        Fixture::build(seed, virtual_ab, super_size, false)
    }

    /// With `avb`, the device verifies boot: slot a's physical `vbmeta` holds the old images'
    /// hashes, and the payload carries a new `vbmeta` (a physical partition, written in place)
    /// with the new images' hashes, which the pre-switch AVB check reads through the snapshots.
    pub fn with_avb(seed: u64, virtual_ab: bool, avb: bool) -> Fixture {
        Fixture::build(seed, virtual_ab, 40 * MIB, avb)
    }

    pub fn build(seed: u64, virtual_ab: bool, super_size: u64, avb: bool) -> Fixture {
        Fixture::build_with(
            seed,
            virtual_ab,
            super_size,
            avb,
            Vabc::cuttlefish_android15(),
        )
    }

    /// An Android 13/14 payload: COW v2 with gz (the generator's default), no compression
    /// factor (v2 compresses block by block).
    pub fn v2(seed: u64) -> Fixture {
        let v2 = Vabc {
            enabled: true,
            compression_param: Some("gz".into()),
            cow_version: Some(2),
            ..Vabc::default()
        };
        Fixture::build_with(seed, true, 40 * MIB, false, v2)
    }

    pub fn build_with(
        seed: u64,
        virtual_ab: bool,
        super_size: u64,
        avb: bool,
        vabc: Vabc,
    ) -> Fixture {
        Fixture::build_postinstall(seed, virtual_ab, super_size, avb, vabc, Vec::new())
    }

    /// The COW v3 payload whose `system` carries a postinstall program (`postinst`, ext4).
    pub fn with_postinstall(seed: u64) -> Fixture {
        let step = build::parse_postinstall("system=postinst:ext4").unwrap();
        Fixture::build_postinstall(
            seed,
            true,
            40 * MIB,
            false,
            Vabc::cuttlefish_android15(),
            vec![step],
        )
    }

    pub fn build_postinstall(
        seed: u64,
        virtual_ab: bool,
        super_size: u64,
        avb: bool,
        vabc: Vabc,
        postinstall: Vec<(String, abupdate::payload::manifest::Postinstall)>,
    ) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        Fixture::build_in(
            tmp,
            seed,
            (virtual_ab, super_size, avb),
            vabc,
            postinstall,
            None,
        )
    }

    /// The COW v3 payload whose `system` carries a postinstall program, its old and new images
    /// made by `system(root)` in the fixture's directory `root` (file systems, say).
    pub fn with_system(
        seed: u64,
        postinstall: &str,
        system: impl FnOnce(&Path) -> (Vec<u8>, Vec<u8>),
    ) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let images = system(tmp.path());
        let step = build::parse_postinstall(postinstall).unwrap();
        let shape = (true, 40 * MIB, false);
        Fixture::build_in(
            tmp,
            seed,
            shape,
            Vabc::cuttlefish_android15(),
            vec![step],
            Some(images),
        )
    }

    fn build_in(
        tmp: tempfile::TempDir,
        seed: u64,
        (virtual_ab, super_size, avb): (bool, u64, bool),
        vabc: Vabc,
        postinstall: Vec<(String, abupdate::payload::manifest::Postinstall)>,
        mut system: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Fixture {
        let root = tmp.path().to_owned();
        let dev = root.join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let mut rng = Rng(seed);
        let mut images = Vec::new();
        let mut specs = Vec::new();
        for (name, blocks) in LOGICAL {
            let given = if name == "system" {
                system.take()
            } else {
                None
            };
            let (old, new) = match given {
                Some(given) => given,
                None => {
                    let old = mixed_image(&mut rng, blocks);
                    let new = evolve(&mut rng, &old);
                    (old, new)
                }
            };
            let (o, n) = (
                root.join(format!("{name}_old.img")),
                root.join(format!("{name}.img")),
            );
            std::fs::write(&o, &old).unwrap();
            std::fs::write(&n, &new).unwrap();
            specs.push(PartitionSpec {
                name: name.to_string(),
                new: n,
                old: Some(o),
                append_verity: false,
            });
            images.push((name, old, new));
        }
        let sizes: Vec<(&str, u64)> = images
            .iter()
            .map(|(n, o, _)| (*n, o.len() as u64))
            .collect();
        let layout = super_image::ab_layout(super_size, "main", 16 * MIB, &sizes, virtual_ab);
        let v1: Vec<(String, &[u8])> = images
            .iter()
            .map(|(n, o, _)| (format!("{n}_a"), o.as_slice()))
            .collect();
        let v1: Vec<(&str, &[u8])> = v1.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        super_image::write(&dev.join("super.img"), &layout, &v1).unwrap();
        MiscBootControl::create_image(&dev.join("misc.img"), Slot::A).unwrap();
        std::fs::write(
            dev.join("build.prop"),
            format!(
                "ro.build.date.utc=0\nro.virtual_ab.enabled={virtual_ab}\n\
                 ro.build.fingerprint={FINGERPRINT}\nro.virtual_ab.io_uring.enabled=true\n"
            ),
        )
        .unwrap();

        if avb {
            let images_of = |new: bool| -> Vec<(&str, &[u8])> {
                images
                    .iter()
                    .map(|(n, o, w)| (*n, if new { w.as_slice() } else { o.as_slice() }))
                    .collect()
            };
            std::fs::write(dev.join("vbmeta_a.img"), vbmeta(&images_of(false))).unwrap();
            std::fs::write(dev.join("vbmeta_b.img"), vec![0u8; 64 << 10]).unwrap();
            let new = root.join("vbmeta.img");
            std::fs::write(&new, vbmeta(&images_of(true))).unwrap();
            specs.push(PartitionSpec {
                name: "vbmeta".into(),
                new,
                old: None,
                append_verity: false,
            });
        }
        let mut dynamic = super_image::dynamic_metadata("main", 16 * MIB, &LOGICAL.map(|(n, _)| n));
        dynamic.snapshot_enabled = true;
        dynamic.vabc = vabc;
        let options = BuildOptions {
            threads: 2,
            dynamic: Some(dynamic),
            postinstall,
            ..BuildOptions::default()
        };
        let built = root.join("delta.bin");
        build::build(&specs, &options, &built).unwrap();
        let mut f = Forge::read(&built);
        assert!(f.add_merge_operations() > 0, "no XOR merge ops");
        f.unsign();
        let payload = root.join("payload.bin");
        std::fs::write(&payload, f.to_bytes()).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            dev,
            payload,
            images,
        }
    }

    pub fn updater(&self, current: Slot) -> Updater {
        let options = HostOptions {
            current: Some(current),
            ..HostOptions::default()
        };
        Updater::open_host(&self.dev, &options).unwrap()
    }

    pub fn apply(&self) -> abupdate::Result<abupdate::updater::Outcome> {
        let options = ApplyOptions {
            threads: 2,
            ..super::unsigned_options()
        };
        self.updater(Slot::A).apply(
            &mut Source::file(&self.payload)?,
            &options,
            &abupdate::engine::Quiet,
        )
    }

    /// Slot B's partitions hold the new images.
    pub fn assert_slot_b_new(&self) {
        for (name, _, new) in &self.images {
            let got = self.read(name, Slot::B);
            assert!(got[..new.len()] == new[..], "{name}_b is not the new image");
        }
    }

    /// The reboot into slot B: marked successful, then the previous update's cleanup (the
    /// merge), after which slot B holds the new images.
    pub fn merge_after_reboot(&self) {
        let updater = self.updater(Slot::B);
        updater.mark_boot_successful().unwrap();
        updater.finish_previous_update().unwrap();
        self.assert_slot_b_new();
    }

    pub fn read(&self, name: &str, slot: Slot) -> Vec<u8> {
        let part = Device::host(&self.dev, slot).read_only(name, slot).unwrap();
        let mut data = vec![0u8; part.size() as usize];
        part.read_at(&mut data, 0).unwrap();
        data
    }

    /// Partition `name`'s COW partition in slot b's metadata, out of super with AOSP's
    /// `lpunpack` into `dir`: its file.
    pub fn lpunpack_cow(&self, name: &str, dir: &Path) -> PathBuf {
        run(Command::new(tool("lpunpack"))
            .arg("--slot=1")
            .arg(format!("--partition={name}_b-cow"))
            .arg(self.super_img())
            .arg(dir));
        dir.join(format!("{name}_b-cow.img"))
    }

    /// AOSP's `inspect_cow` accepts the COW file `cow` of partition `name` (its merge sequence
    /// consistent), and `applycow` over the old image makes `new` from it.
    pub fn assert_aosp_reads_cow(&self, name: &str, cow: &Path, new: &[u8]) {
        let report = run(Command::new(tool("inspect_cow"))
            .arg("--verify_merge_sequence")
            .arg(cow));
        assert!(report.contains("Merge sequence is consistent."), "{report}");
        let out = self.root.join("view.img");
        run(Command::new(tool("applycow"))
            .args(["--mode", "view", "--size", &new.len().to_string()])
            .arg(self.root.join(format!("{name}_old.img")))
            .arg(cow)
            .arg(&out));
        assert!(std::fs::read(&out).unwrap() == *new, "{name}: applycow");
    }

    pub fn ota(&self) -> PathBuf {
        self.dev.join("metadata/ota")
    }

    pub fn super_img(&self) -> PathBuf {
        self.dev.join("super.img")
    }

    pub fn metadata(&self, slot: Slot) -> lp::Metadata {
        Device::host(&self.dev, Slot::A)
            .super_metadata(slot)
            .unwrap()
            .1
    }

    pub fn merge_cmd(&self) -> Command {
        merge_cmd(&self.dev)
    }

    /// Runs `cmd` on the device killed (`kill -9`) at random points within the time a clean
    /// run on a copy takes, until a run finishes, or a killed one had finished its work
    /// (`done`), after three kills left `progress` (a path in the device directory) behind;
    /// an end before that starts over from the device as it was. (kills, kills that left
    /// `progress`, clean ms.)
    pub fn kill_until_done(
        &self,
        cmd: impl Fn(&Path) -> Command,
        done: impl Fn() -> bool,
        progress: &str,
        seed: u64,
    ) -> (u32, u32, u64) {
        let pristine = self.root.join("pristine");
        copy_dir(&self.dev, &pristine);
        let probe = self.root.join("probe");
        copy_dir(&self.dev, &probe);
        let t = Instant::now();
        run(&mut cmd(&probe));
        let full = t.elapsed().as_millis().max(10) as u64;
        let mut rng = Rng(seed);
        let (mut kills, mut mid) = (0, 0);
        loop {
            let child = cmd(&self.dev).spawn().unwrap();
            let finished = match super::kill_after(child, Duration::from_millis(rng.below(full))) {
                None => {
                    kills += 1;
                    if self.dev.join(progress).exists() {
                        mid += 1;
                    }
                    done()
                }
                Some(out) => {
                    assert!(
                        out.status.success(),
                        "{}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                    true
                }
            };
            if finished && mid >= 3 {
                break;
            }
            if finished {
                std::fs::remove_dir_all(&self.dev).unwrap();
                copy_dir(&pristine, &self.dev);
                mid = 0;
            }
            assert!(kills < 200, "{cmd:?} never finished", cmd = cmd(&self.dev));
        }
        (kills, mid, full)
    }
}

/// `abupdate merge --device DEV` on slot b.
pub fn merge_cmd(dev: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_abupdate"));
    c.args(["merge", "--current-slot", "b", "--device"])
        .arg(dev)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

pub fn tool(name: &str) -> PathBuf {
    super::shared::aosp_tool(name)
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}: {all}");
    all
}

/// The running build's `ro.build.fingerprint` in the fixture's `build.prop` (which also
/// enables io_uring for snapuserd: `ro.virtual_ab.io_uring.enabled=true`).
pub const FINGERPRINT: &str = "abupdate/vab_fixture/x86_64:15/AP3A/1:userdebug/test-keys";

/// `protoc --decode_raw` of a state file: field numbers, independent of proto/snapshot.proto.
pub fn decode_raw(file: &Path) -> String {
    run(Command::new("protoc")
        .arg("--decode_raw")
        .stdin(std::fs::File::open(file).unwrap()))
}

/// `protoc --decode` of a libsnapshot state file with proto/snapshot.proto.
pub fn decode(message: &str, file: &Path) -> String {
    let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    run(Command::new("protoc")
        .arg(format!("--decode=android.snapshot.{message}"))
        .arg("-I")
        .arg(&proto)
        .arg(proto.join("snapshot.proto"))
        .stdin(std::fs::File::open(file).unwrap()))
}

/// The misc Virtual A/B message's (merge status, source slot).
pub fn misc_status(fx: &Fixture) -> Option<(u8, u8)> {
    vab_message::read(&fx.dev.join("misc.img")).unwrap()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}
