//! A corpus of malformed and hostile payloads, forged from valid signed payloads made by the
//! library's builder and from AOSP's sample payloads. Every case must fail with its exact status
//! code (and a message naming the reason), never panic, and leave the running slot untouched:
//! its `_a` images byte for byte, and `misc` still recording slot A as active and as it was.
//!
//! The cases live in `tests/hostile/`: header and manifest structure, signatures and header
//! pairs, operations and the device. Each case runs through the library; a handful also run
//! through the `abupdate apply` binary, whose exit status must be the same code.

mod common;
#[path = "hostile/format.rs"]
mod format;
#[path = "hostile/operations.rs"]
mod operations;
#[path = "hostile/trust.rs"]
mod trust;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use abupdate::boot_control::MiscBootControl;
use abupdate::build::ops::Compressors;
use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::engine::{ApplyOptions, Quiet};
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::signature::Signer;
use abupdate::slot::{BootControl, Slot};
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Updater};
use abupdate::ErrorCode;
use common::forge::{self, Forge};

/// Partition sizes of our simulated device, in blocks. `system` spans two 2 MiB chunks, so a
/// full payload has more than one operation for it.
pub const SYSTEM_BLOCKS: usize = 640;
pub const VENDOR_BLOCKS: usize = 24;

/// One hostile case: what to try, and how it must fail.
pub struct Case {
    pub name: &'static str,
    pub expect: ErrorCode,
    /// A fragment of the error message, so that a case fails for the reason it was made for.
    pub says: &'static str,
    pub attempt: fn(&Fixture) -> Attempt,
}

/// A payload and the device and options to apply it with.
pub struct Attempt {
    pub payload: Vec<u8>,
    pub device: DeviceKind,
    /// The trusted key (a PEM public key), if any.
    pub key: Option<PathBuf>,
    /// Without a key: whether unsigned payloads are explicitly accepted (`--allow-unsigned`).
    pub allow_unsigned: bool,
    pub headers: Vec<String>,
    /// Changes to the device directory before the attempt.
    pub tweak: Option<fn(&Path)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DeviceKind {
    /// `system` and `vendor`, holding the base of [`Fixture::delta`].
    Ours,
    /// `kernel` and `root`, holding the base of AOSP's sample delta.
    Aosp,
}

impl Attempt {
    /// Our device, trusting key A (which signed the fixture's payloads).
    pub fn ours(fx: &Fixture, payload: Vec<u8>) -> Attempt {
        Attempt {
            payload,
            device: DeviceKind::Ours,
            key: Some(fx.pub_a.clone()),
            allow_unsigned: false,
            headers: vec![],
            tweak: None,
        }
    }

    /// The AOSP sample device, trusting no key and accepting unsigned payloads (the samples
    /// are unsigned).
    pub fn aosp(payload: Vec<u8>) -> Attempt {
        Attempt {
            payload,
            device: DeviceKind::Aosp,
            key: None,
            allow_unsigned: true,
            headers: vec![],
            tweak: None,
        }
    }

    /// No key, unsigned payloads explicitly accepted.
    pub fn no_key(mut self) -> Attempt {
        self.key = None;
        self.allow_unsigned = true;
        self
    }

    /// No key, and unsigned payloads not accepted either: nothing can be applied.
    pub fn no_trust(mut self) -> Attempt {
        self.key = None;
        self.allow_unsigned = false;
        self
    }

    pub fn key(mut self, key: &Path) -> Attempt {
        self.key = Some(key.to_owned());
        self
    }

    pub fn header(mut self, pair: impl Into<String>) -> Attempt {
        self.headers.push(pair.into());
        self
    }

    pub fn tweak(mut self, f: fn(&Path)) -> Attempt {
        self.tweak = Some(f);
        self
    }
}

/// Everything the cases are forged from, made once per test binary.
pub struct Fixture {
    /// Device templates: `ours/` and `aosp/`, each with `_a`, `_b` images and `misc.img`.
    pub templates: tempfile::TempDir,
    /// Signed (key A) full and delta payloads of our device.
    pub full: Forge,
    pub delta: Forge,
    /// AOSP's unsigned sample payloads.
    pub aosp_full: Forge,
    pub aosp_delta: Forge,
    pub system_new: Vec<u8>,
    pub key_a: Signer,
    pub key_b: Signer,
    pub pub_a: PathBuf,
    pub pub_b: PathBuf,
}

impl Fixture {
    pub fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(Fixture::make)
    }

    fn make() -> Fixture {
        let templates = tempfile::tempdir().unwrap();
        let root = templates.path();
        let (key_a, pub_a) = forge::test_key('a');
        let (key_b, pub_b) = forge::test_key('b');

        let mut rng = common::Rng(0x5eed_0fba_5e00);
        let system_old = common::mixed_image(&mut rng, SYSTEM_BLOCKS);
        let vendor_old = common::mixed_image(&mut rng, VENDOR_BLOCKS);
        let mut system_new = system_old.clone();
        system_new[3 * 4096..5 * 4096].fill(0);
        system_new[40 * 4096 + 100] ^= 0x5a;
        system_new.copy_within(100 * 4096..104 * 4096, 300 * 4096);
        rng.fill(&mut system_new[600 * 4096..602 * 4096]);
        let mut vendor_new = vendor_old.clone();
        vendor_new[4096..4200].fill(b'v');

        let ours = root.join("ours");
        std::fs::create_dir(&ours).unwrap();
        common::put_image(&ours, "system", 'a', &system_old, system_old.len() as u64);
        common::put_image(&ours, "vendor", 'a', &vendor_old, vendor_old.len() as u64);
        common::put_image(&ours, "system", 'b', &[], system_old.len() as u64);
        common::put_image(&ours, "vendor", 'b', &[], vendor_old.len() as u64);
        MiscBootControl::create_image(&ours.join("misc.img"), Slot::A).unwrap();

        let images = root.join("images");
        std::fs::create_dir(&images).unwrap();
        for (name, data) in [
            ("system_old", &system_old),
            ("system_new", &system_new),
            ("vendor_old", &vendor_old),
            ("vendor_new", &vendor_new),
        ] {
            std::fs::write(images.join(format!("{name}.img")), data).unwrap();
        }
        let spec = |name: &str, delta: bool| PartitionSpec {
            name: name.to_owned(),
            new: images.join(format!("{name}_new.img")),
            old: delta.then(|| images.join(format!("{name}_old.img"))),
            append_verity: false,
        };
        let options = BuildOptions {
            signer: Some(forge::test_key('a').0),
            compressors: Compressors {
                xz: true,
                bzip2: true,
            },
            threads: 2,
            ..BuildOptions::default()
        };
        let full_path = root.join("full.bin");
        build::build(
            &[spec("system", false), spec("vendor", false)],
            &options,
            &full_path,
        )
        .unwrap();
        let delta_path = root.join("delta.bin");
        build::build(
            &[spec("system", true), spec("vendor", true)],
            &options,
            &delta_path,
        )
        .unwrap();

        let samples = root.join("samples");
        std::fs::create_dir(&samples).unwrap();
        common::unpack_aosp_samples(&samples);
        let aosp = root.join("aosp");
        std::fs::create_dir(&aosp).unwrap();
        let read = |name: &str| std::fs::read(samples.join(name)).unwrap();
        let (kernel_old, root_old) = (read("disk_ext2_4k_empty.img"), read("disk_sqfs_empty.img"));
        common::put_image(&aosp, "kernel", 'a', &kernel_old, kernel_old.len() as u64);
        common::put_image(&aosp, "root", 'a', &root_old, root_old.len() as u64);
        common::put_image(&aosp, "kernel", 'b', &[], 4 << 20);
        common::put_image(&aosp, "root", 'b', &[], 12288);
        MiscBootControl::create_image(&aosp.join("misc.img"), Slot::A).unwrap();

        Fixture {
            full: Forge::read(&full_path),
            delta: Forge::read(&delta_path),
            aosp_full: Forge::read(&samples.join("full_payload.bin")),
            aosp_delta: Forge::read(&samples.join("delta_payload.bin")),
            templates,
            system_new,
            key_a,
            key_b,
            pub_a,
            pub_b,
        }
    }

    /// A fresh copy of a device template under `dir`.
    pub fn device(&self, kind: DeviceKind, dir: &Path) -> PathBuf {
        let from = self.templates.path().join(match kind {
            DeviceKind::Ours => "ours",
            DeviceKind::Aosp => "aosp",
        });
        let to = dir.join("dev");
        std::fs::create_dir(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
        to
    }
}

/// What must not change: every `_a` image, and the part of the `bootloader_control` record
/// that describes the running slot (suffix, magic, version, flags, slot A's entry).
#[derive(PartialEq, Eq, Debug)]
struct SourceSlot {
    images: Vec<(String, Vec<u8>)>,
    record_head: Vec<u8>,
    active: Slot,
}

impl SourceSlot {
    fn read(dev: &Path) -> SourceSlot {
        let mut images: Vec<(String, Vec<u8>)> = std::fs::read_dir(dev)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with("_a.img"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        images.sort();
        let misc = std::fs::read(dev.join("misc.img")).unwrap();
        let boot = MiscBootControl::open_device_dir(dev, None).unwrap();
        SourceSlot {
            images,
            record_head: misc[2048..2048 + 14].to_vec(),
            active: boot.active_slot().unwrap(),
        }
    }
}

/// Applies through the library, as the CLI and the service do.
fn apply_lib(dev: &Path, state: &Path, payload: &Path, attempt: &Attempt) -> abupdate::Result<()> {
    let host = HostOptions {
        state_dir: Some(state.to_owned()),
        ..HostOptions::default()
    };
    let updater = Updater::open_host(dev, &host)?;
    let mut options = ApplyOptions {
        threads: 2,
        ..ApplyOptions::default()
    };
    options.keys = match (&attempt.key, attempt.allow_unsigned) {
        (Some(key), _) => abupdate::key_file::load(key)?,
        (None, true) => TrustedKeys::accept_unsigned(),
        (None, false) => TrustedKeys::none(),
    };
    for pair in &attempt.headers {
        options.properties.set_pair(pair)?;
    }
    let mut source = Source::file(payload)?;
    updater.apply(&mut source, &options, &Quiet).map(|_| ())
}

/// Applies through `abupdate apply`; returns the exit code and stderr.
fn apply_cli(dev: &Path, state: &Path, payload: &Path, attempt: &Attempt) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_abupdate"));
    cmd.arg("apply")
        .arg("--device")
        .arg(dev)
        .arg("--state-dir")
        .arg(state)
        .args(["--threads", "2"]);
    match (&attempt.key, attempt.allow_unsigned) {
        (Some(key), _) => drop(cmd.arg("--key").arg(key)),
        (None, true) => drop(cmd.arg("--allow-unsigned")),
        (None, false) => {}
    }
    for pair in &attempt.headers {
        cmd.arg("--header").arg(pair);
    }
    let out = cmd.arg(payload).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Library,
    Cli,
}

/// Runs one case on a fresh device; `Err` says how it went wrong.
fn run_case(fx: &Fixture, case: &Case, via: Via) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let attempt = catch_unwind(AssertUnwindSafe(|| (case.attempt)(fx)))
        .map_err(|_| "forging the payload panicked".to_owned())?;
    let dev = fx.device(attempt.device, tmp.path());
    if let Some(tweak) = attempt.tweak {
        tweak(&dev);
    }
    let payload = tmp.path().join("payload.bin");
    std::fs::write(&payload, &attempt.payload).unwrap();
    let state = tmp.path().join("state");
    let before = SourceSlot::read(&dev);

    let failure = match via {
        Via::Library => match catch_unwind(AssertUnwindSafe(|| {
            apply_lib(&dev, &state, &payload, &attempt)
        })) {
            Err(_) => Some("PANICKED".to_owned()),
            Ok(Ok(())) => Some("applied successfully".to_owned()),
            Ok(Err(e)) if e.code != case.expect => Some(format!("got {e}")),
            Ok(Err(e)) if !e.message.contains(case.says) => {
                Some(format!("message {:?} lacks {:?}", e.message, case.says))
            }
            Ok(Err(_)) => None,
        },
        Via::Cli => {
            let (code, stderr) = apply_cli(&dev, &state, &payload, &attempt);
            if code != case.expect.as_i32() {
                Some(format!("exit code {code}: {stderr}"))
            } else if !stderr.contains(case.says) || !stderr.contains(&format!("error {code}:")) {
                Some(format!("stderr {stderr:?} lacks {:?}", case.says))
            } else {
                None
            }
        }
    };
    let mut problems: Vec<String> = failure.into_iter().collect();
    let after = SourceSlot::read(&dev);
    if after.images != before.images {
        problems.push("SOURCE SLOT IMAGES CHANGED".to_owned());
    }
    if after.record_head != before.record_head || after.active != Slot::A {
        problems.push(format!(
            "running slot's boot record changed (active {})",
            after.active
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs a table of cases and reports every failure at once.
fn run_table(cases: &[Case]) {
    let fx = Fixture::get();
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run_case(fx, case, Via::Library)
                .err()
                .map(|why| format!("{} (want {}): {why}", case.name, case.expect))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn corpus_is_large_and_names_are_unique() {
    let all: Vec<Case> = [format::cases(), trust::cases(), operations::cases()]
        .into_iter()
        .flatten()
        .collect();
    assert!(all.len() >= 30, "only {} cases", all.len());
    let mut names: Vec<_> = all.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "duplicate case names");
}

/// The payloads the cases are forged from apply, and so do they re-assembled and re-signed by
/// the forge: a case's failure comes from its mutation, not from the forging.
#[test]
fn unmodified_payloads_apply() {
    let fx = Fixture::get();
    type Make = fn(&Fixture) -> Attempt;
    let good: [(&str, Make); 6] = [
        ("full", |fx| {
            let bytes = fx.full.to_bytes();
            let props = forge::properties(&bytes);
            props
                .into_iter()
                .fold(Attempt::ours(fx, bytes), Attempt::header)
        }),
        ("delta", |fx| Attempt::ours(fx, fx.delta.to_bytes())),
        ("full, re-signed", |fx| {
            Attempt::ours(
                fx,
                fx.full
                    .clone()
                    .edit_ops(|_, _, _, _| {})
                    .sign(&fx.key_a)
                    .to_bytes(),
            )
        }),
        ("delta, re-signed", |fx| {
            Attempt::ours(
                fx,
                fx.delta
                    .clone()
                    .edit_ops(|_, _, _, _| {})
                    .sign(&fx.key_a)
                    .to_bytes(),
            )
        }),
        ("aosp full", |fx| Attempt::aosp(fx.aosp_full.to_bytes())),
        ("aosp delta, re-assembled", |fx| {
            Attempt::aosp(fx.aosp_delta.clone().edit_ops(|_, _, _, _| {}).to_bytes())
        }),
    ];
    for (name, attempt) in good {
        let attempt = attempt(fx);
        let tmp = tempfile::tempdir().unwrap();
        let dev = fx.device(attempt.device, tmp.path());
        let payload = tmp.path().join("payload.bin");
        std::fs::write(&payload, &attempt.payload).unwrap();
        apply_lib(&dev, &tmp.path().join("state"), &payload, &attempt)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let boot = MiscBootControl::open_device_dir(&dev, None).unwrap();
        assert_eq!(
            boot.active_slot().unwrap(),
            Slot::B,
            "{name}: slot not switched"
        );
        if attempt.device == DeviceKind::Ours {
            assert!(
                std::fs::read(dev.join("system_b.img")).unwrap() == fx.system_new,
                "{name}: system differs"
            );
        }
    }
}

#[test]
fn format_cases() {
    run_table(&format::cases());
}

#[test]
fn trust_cases() {
    run_table(&trust::cases());
}

#[test]
fn operation_cases() {
    run_table(&operations::cases());
}

/// A handful of cases through the binary: the exit status is the status code.
#[test]
fn cli_exit_codes_are_status_codes() {
    let fx = Fixture::get();
    let all: Vec<Case> = [format::cases(), trust::cases(), operations::cases()]
        .into_iter()
        .flatten()
        .collect();
    let picked = [
        "bad magic",
        "truncated mid-blob",
        "unsigned payload with a key configured",
        "no trusted key, unsigned payload",
        "signed payload, a blob without data_sha256_hash",
        "FILE_SIZE mismatch",
        "blob corrupted",
        "delta on the wrong base",
        "PUFFDIFF operation",
        "target partition missing",
    ];
    let mut failures = vec![];
    for name in picked {
        let case = all
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no case {name:?}"));
        if let Err(why) = run_case(fx, case, Via::Cli) {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
