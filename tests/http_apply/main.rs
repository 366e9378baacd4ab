//! Streaming from the OTA server, end to end: the real updater (`Updater::open_host` + `apply`)
//! on a device directory applies signed full and delta payloads served by a real nginx (Debian
//! `nginx-light`), over TLS with a CA made by `openssl`, and through a fault-injecting proxy of
//! ours on loopback. Every fault ends with the new partitions in slot B or with a 10-class
//! code, never with a switched slot or a touched slot A, and a later apply resumes where the
//! checkpoint says.

#[path = "../common/mod.rs"]
mod common;
mod control;
mod device;
mod faults;

use std::sync::OnceLock;
use std::time::Duration;

use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::download::SourceOptions;
use abupdate::engine::checkpoint::Phase;
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::properties::PayloadProperties;
use abupdate::payload::signature::Signer;
use abupdate::payload::{Manifest, PayloadHeader, HEADER_SIZE};
use abupdate::slot::Slot;

use common::nginx::Nginx;
use common::pki::Pki;
use common::Rng;
pub use device::{apply, apply_with, rerun, Device, BUFFER};

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
