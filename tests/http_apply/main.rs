//! Streaming from the OTA server, end to end: the real updater (`Updater::open_host` + `apply`)
//! on a device directory applies signed full and delta payloads served by a real nginx (Debian
//! `nginx-light`), over TLS with a CA made by `openssl`, and through a fault-injecting proxy of
//! ours on loopback. Every fault ends with the new partitions in slot B or with a 10-class
//! code, never with a switched slot or a touched slot A, and a later apply resumes where the
//! checkpoint says.

#[path = "../common/mod.rs"]
mod common;
mod control;
mod faults;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::device::Slot;
use abupdate::download::SourceOptions;
use abupdate::engine::checkpoint::{Checkpoint, CheckpointStore, Phase};
use abupdate::engine::{ApplyOptions, Observer, Quiet};
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::properties::PayloadProperties;
use abupdate::payload::signature::Signer;
use abupdate::payload::{Manifest, PayloadHeader, HEADER_SIZE};
use abupdate::slot::{BootControl, MiscBootControl};
use abupdate::source::Source;
use abupdate::updater::{HostOptions, Outcome, Updater};
use abupdate::Error;

use common::nginx::Nginx;
use common::pki::Pki;
use common::Rng;

/// The device's partitions and their sizes in 4 KiB blocks, 6.75 MiB in all: a full payload
/// has seven operations (the builder cuts 2 MiB chunks). Small, because the tests build and
/// apply in debug builds.
const PARTITIONS: [(&str, usize); 6] = [
    ("system", 768),
    ("vendor", 384),
    ("product", 256),
    ("odm", 128),
    ("boot", 128),
    ("dtbo", 64),
];

/// The seed of random fault positions; `ABUPDATE_TEST_SEED` replays another run.
pub fn seed() -> u64 {
    std::env::var("ABUPDATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x0ba5_eba1)
}

/// Short timeouts and ms-scale backoff keep the fault cases fast.
pub fn opts() -> SourceOptions {
    SourceOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_millis(300),
        max_retries: 8,
        backoff_initial: Duration::from_millis(1),
        backoff_max: Duration::from_millis(20),
        ..SourceOptions::default()
    }
}

/// A built payload and the images it installs.
pub struct Payload {
    pub bytes: Vec<u8>,
    pub properties: PayloadProperties,
    pub manifest: Manifest,
    pub images: Vec<Vec<u8>>,
}

impl Payload {
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Where the data blobs start: header, manifest and metadata signature come first.
    pub fn data_offset(&self) -> u64 {
        PayloadHeader::parse(&self.bytes[..HEADER_SIZE], Some(self.size()))
            .unwrap()
            .data_offset()
    }

    /// The largest operation blob: what one cut may cost again at most.
    pub fn largest_blob(&self) -> u64 {
        self.operations()
            .map(|op| op.data_length)
            .max()
            .unwrap_or(0)
    }

    pub fn operations(&self) -> impl Iterator<Item = &abupdate::payload::Operation> {
        self.manifest.partitions.iter().flat_map(|p| &p.operations)
    }
}

/// Everything the tests apply, built once per test process.
pub struct Fixture {
    /// Slot A's images: the base of the delta.
    pub old: Vec<Vec<u8>>,
    /// A full payload of the new images.
    pub full: Payload,
    /// The delta from `old` to the same new images.
    pub delta: Payload,
    /// A full payload of other images: what a replaced file on the server holds.
    pub other: Payload,
    pub keys: TrustedKeys,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build_fixture)
}

fn build_fixture() -> Fixture {
    let started = std::time::Instant::now();
    let mut rng = Rng(0x5eed_0f0a);
    let old: Vec<Vec<u8>> = PARTITIONS
        .iter()
        .map(|&(_, blocks)| common::mixed_image(&mut rng, blocks))
        .collect();
    let new: Vec<Vec<u8>> = old.iter().map(|o| evolve(o, &mut rng)).collect();
    let other: Vec<Vec<u8>> = new.iter().map(|n| evolve(n, &mut rng)).collect();
    let signer = || Signer::from_pem(TEST_KEY).unwrap();
    let mut keys = TrustedKeys::none();
    keys.add_bytes(signer().public_key_pem().unwrap().as_bytes())
        .unwrap();

    let (full, delta, other) = std::thread::scope(|s| {
        let full = s.spawn(|| build_payload(&new, None, true));
        let delta = s.spawn(|| build_payload(&new, Some(&old), true));
        // Uncompressed: quick to build, and it only needs to be another payload.
        let other = build_payload(&other, None, false);
        (full.join().unwrap(), delta.join().unwrap(), other)
    });
    eprintln!(
        "payloads built in {:.1?}: full {} bytes ({} operations), delta {} bytes ({} operations)",
        started.elapsed(),
        full.size(),
        full.operations().count(),
        delta.size(),
        delta.operations().count()
    );
    Fixture {
        old,
        full,
        delta,
        other,
        keys,
    }
}

const TEST_KEY: &str = include_str!("../data/avb/testkey_rsa2048.pem");

/// A signed payload installing `images`: full, or a delta from `base`.
fn build_payload(images: &[Vec<u8>], base: Option<&[Vec<u8>]>, xz: bool) -> Payload {
    let dir = tempfile::tempdir().unwrap();
    let write = |tag: &str, name: &str, image: &[u8]| {
        let path = dir.path().join(format!("{tag}-{name}.img"));
        std::fs::write(&path, image).unwrap();
        path
    };
    let specs: Vec<PartitionSpec> = PARTITIONS
        .iter()
        .enumerate()
        .map(|(i, &(name, _))| PartitionSpec {
            name: name.into(),
            new: write("new", name, &images[i]),
            old: base.map(|b| write("old", name, &b[i])),
            append_verity: false,
        })
        .collect();
    let options = BuildOptions {
        signer: Some(Signer::from_pem(TEST_KEY).unwrap()),
        compressors: Compressors { xz, bzip2: false },
        ..BuildOptions::default()
    };
    let out = dir.path().join("payload.bin");
    let report = build::build(&specs, &options, &out).unwrap();
    Payload {
        bytes: std::fs::read(&out).unwrap(),
        properties: report.properties,
        manifest: report.manifest,
        images: images.to_vec(),
    }
}

/// The next build of an image: runs of up to 16 blocks rewritten, edited or zeroed, about a
/// sixteenth of the image in all (files change as a whole, so changes come in runs).
fn evolve(old: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut new = old.to_vec();
    let blocks = new.len() / 4096;
    for _ in 0..blocks / 128 {
        let len = 1 + rng.below(16) as usize;
        let start = rng.below((blocks - len) as u64) as usize;
        let run = &mut new[start * 4096..(start + len) * 4096];
        match rng.below(3) {
            0 => rng.fill(run),
            1 => {
                for block in run.chunks_mut(4096) {
                    let at = rng.below(4000) as usize;
                    block[at..at + 64].fill(b'#');
                }
            }
            _ => run.fill(0),
        }
    }
    new
}

/// A device directory running slot A with the old images; slot B holds stale bytes.
pub struct Device {
    dir: tempfile::TempDir,
}

impl Device {
    pub fn fresh() -> Device {
        let fx = fixture();
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0xb0b0);
        for (&(name, _), old) in PARTITIONS.iter().zip(&fx.old) {
            std::fs::write(dir.path().join(format!("{name}_a.img")), old).unwrap();
            let mut stale = vec![0u8; old.len()];
            rng.fill(&mut stale);
            std::fs::write(dir.path().join(format!("{name}_b.img")), stale).unwrap();
        }
        MiscBootControl::create_image(&dir.path().join("misc.img"), Slot::A).unwrap();
        Device { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh updater, as a new process (or a restarted service) would open it.
    pub fn updater(&self) -> Updater {
        Updater::open_host(self.path(), &HostOptions::default()).unwrap()
    }

    pub fn image(&self, index: usize, slot: Slot) -> Vec<u8> {
        let name = PARTITIONS[index].0;
        std::fs::read(self.path().join(format!("{name}{}.img", slot.suffix()))).unwrap()
    }

    pub fn active_slot(&self) -> Slot {
        MiscBootControl::open_device_dir(self.path(), Some(Slot::A))
            .unwrap()
            .active_slot()
            .unwrap()
    }

    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.updater().store().load().unwrap()
    }

    /// Slot B holds `payload`'s images, slot A is untouched, and B boots next.
    pub fn assert_updated(&self, payload: &Payload) {
        for (i, image) in payload.images.iter().enumerate() {
            assert!(
                self.image(i, Slot::B) == *image,
                "{} in slot B differs from the new image",
                PARTITIONS[i].0
            );
        }
        self.assert_slot_a_untouched();
        assert_eq!(self.active_slot(), Slot::B, "the update is not switched to");
    }

    /// A failed apply: a download failure code, slot A still boots and is untouched, and any
    /// checkpoint covers only operations whose bytes are in slot B.
    pub fn assert_failed_safely(&self, error: &Error, payload: &Payload) {
        assert_eq!(
            error.code.as_i32() / 10,
            1,
            "not a download failure: {error}"
        );
        assert_eq!(self.active_slot(), Slot::A, "switched after {error}");
        self.assert_slot_a_untouched();
        if let Some(cp) = self.checkpoint() {
            self.assert_checkpoint_consistent(&cp, payload);
        }
    }

    pub fn assert_slot_a_untouched(&self) {
        for (i, old) in fixture().old.iter().enumerate() {
            assert!(
                self.image(i, Slot::A) == *old,
                "{} in slot A was modified",
                PARTITIONS[i].0
            );
        }
    }

    /// The checkpoint names the data offset right after its last operation, and every
    /// operation it covers has its new bytes in slot B.
    pub fn assert_checkpoint_consistent(&self, cp: &Checkpoint, payload: &Payload) {
        let mut ops = payload
            .manifest
            .partitions
            .iter()
            .enumerate()
            .flat_map(|(i, p)| p.operations.iter().map(move |op| (i, op)));
        let covered: Vec<_> = ops.by_ref().take(cp.next_operation as usize).collect();
        let data_end = covered
            .iter()
            .filter(|(_, op)| op.kind.has_blob())
            .map(|(_, op)| op.data_offset + op.data_length)
            .max()
            .unwrap_or(0);
        assert_eq!(cp.next_data_offset, data_end, "checkpoint offset");
        let images: Vec<Vec<u8>> = (0..PARTITIONS.len())
            .map(|i| self.image(i, Slot::B))
            .collect();
        for (part, op) in covered {
            for e in &op.dst_extents {
                let range = e.byte_offset() as usize..(e.byte_offset() + e.byte_len()) as usize;
                assert!(
                    images[part][range.clone()] == payload.images[part][range.clone()],
                    "checkpointed {:?} at {range:?} of {} is not in slot B",
                    op.kind,
                    PARTITIONS[part].0
                );
            }
        }
    }
}

/// One apply: its outcome and how many payload bytes the source fetched.
pub struct Run {
    pub result: Result<Outcome, Error>,
    pub fetched: u64,
}

impl Run {
    pub fn unwrap(self) -> (Outcome, u64) {
        match self.result {
            Ok(outcome) => (outcome, self.fetched),
            Err(e) => panic!("apply failed: {e}"),
        }
    }

    pub fn unwrap_err(self) -> Error {
        match self.result {
            Ok(_) => panic!("apply succeeded"),
            Err(e) => e,
        }
    }
}

/// Applies `payload`, fetched from `url`, with its `payload_properties.txt` and the key.
pub fn apply(device: &Device, url: &str, payload: &Payload, source: SourceOptions) -> Run {
    apply_with(device, url, &payload.properties, source, &Quiet)
}

/// Applies with the given header pairs and observer; the source knows the payload size when
/// `FILE_SIZE` is among the pairs, as `abupdate apply` does.
pub fn apply_with(
    device: &Device,
    url: &str,
    properties: &PayloadProperties,
    source: SourceOptions,
    observer: &dyn Observer,
) -> Run {
    let updater = device.updater();
    let mut source = Source::new(url, 0, properties.file_size, source);
    let options = ApplyOptions {
        keys: fixture().keys.clone(),
        properties: properties.clone(),
        threads: 2,
        ..ApplyOptions::default()
    };
    let result = updater.apply(&mut source, &options, observer);
    Run {
        result,
        fetched: source.bytes_fetched(),
    }
}

/// Slack on exact byte counts: the connection buffer's worth a dropped stream may have
/// received beyond what the engine consumed.
pub const BUFFER: u64 = 64 * 1024;

/// Re-runs an interrupted apply against a healthy server: it resumes at the checkpoint, fetches
/// the metadata again and then only the data the checkpoint lacks, and finishes. Returns the
/// bytes fetched.
pub fn rerun(device: &Device, url: &str, payload: &Payload) -> u64 {
    let cp = device.checkpoint().expect("a checkpoint to resume from");
    let (outcome, fetched) = apply(device, url, payload, opts()).unwrap();
    device.assert_updated(payload);
    let data_offset = payload.data_offset();
    if cp.next_operation == 0 && cp.phase == Phase::Writing {
        // Nothing written yet: a fresh start, one stream for everything.
        assert_eq!(outcome.report.resumed_at, None);
        assert_eq!(fetched, payload.size());
        return fetched;
    }
    assert_eq!(outcome.report.resumed_at, Some(cp.next_operation));
    let rest = match cp.phase {
        Phase::Writing => payload.size() - data_offset - cp.next_data_offset,
        Phase::Verifying | Phase::Done => 0,
    };
    let metadata = fetched
        .checked_sub(rest)
        .expect("fetched less than the rest");
    eprintln!(
        "re-run from operation {} (data offset {}): fetched {fetched} = {rest} not yet applied + {metadata} for the metadata ({data_offset} bytes)",
        cp.next_operation, cp.next_data_offset
    );
    assert!(
        (data_offset..=data_offset + BUFFER).contains(&metadata),
        "fetched {fetched}: {rest} bytes were missing and the metadata is {data_offset}"
    );
    fetched
}

/// Serves `payload` as `payload.bin`.
pub fn serve(nginx: &Nginx, payload: &Payload) {
    nginx.put("payload.bin", &payload.bytes, 0);
}

#[test]
fn full_and_delta_over_http_and_https_give_identical_partitions() {
    let fx = fixture();
    let pki = Pki::generate();
    let nginx = Nginx::start(Some(&pki));
    nginx.put("full.bin", &fx.full.bytes, 0);
    nginx.put("delta.bin", &fx.delta.bytes, 0);
    let tls = SourceOptions {
        pinned_ca: Some(pki.ca_cert.clone()),
        ..opts()
    };
    let cases = [
        (&fx.full, nginx.url("full.bin"), opts()),
        (&fx.delta, nginx.url("delta.bin"), opts()),
        (
            &fx.full,
            nginx.tls_url("localhost", "full.bin"),
            tls.clone(),
        ),
        (&fx.delta, nginx.tls_url("127.0.0.1", "delta.bin"), tls),
    ];
    for (payload, url, source) in cases {
        let device = Device::fresh();
        let (outcome, fetched) = apply(&device, &url, payload, source).unwrap();
        device.assert_updated(payload);
        assert_eq!(outcome.switched_to, Some(Slot::B), "{url}");
        assert_eq!(outcome.report.resumed_at, None, "{url}");
        // One stream for the whole payload: every byte fetched once.
        assert_eq!(fetched, payload.size(), "{url}");
        assert_eq!(device.checkpoint().map(|cp| cp.phase), Some(Phase::Done));
    }

    // The same payload from a file writes the same bytes.
    let device = Device::fresh();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("delta.bin");
    std::fs::write(&file, &fx.delta.bytes).unwrap();
    apply(&device, file.to_str().unwrap(), &fx.delta, opts()).unwrap();
    device.assert_updated(&fx.delta);
}
