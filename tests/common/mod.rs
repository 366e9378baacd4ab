//! Helpers shared by the integration tests: AOSP sample data, simulated devices, and the real
//! servers and fault-injecting proxy the HTTP tests run against.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub mod forge;
pub mod fuzz_seeds;
pub mod nginx;
pub mod ota;
pub mod pki;
pub mod proxy;
pub mod service;
pub mod shared;
pub mod snapuserd;
pub mod vab;
pub mod veritysetup;
pub mod zucchini;

/// `../shared/testdata/aosp-update-engine` beside the checkout, or under `$ABUPDATE_SHARED`
/// (read-only); a missing one fails with one line saying what goes there.
pub fn testdata() -> PathBuf {
    shared::aosp_samples()
}

/// Unpacks AOSP's sample images and payloads into `dir` (a copy: the originals stay read-only).
pub fn unpack_aosp_samples(dir: &Path) {
    for archive in ["sample_images.tar.bz2", "sample_payloads.tar.xz"] {
        let status = Command::new("tar")
            .arg("xf")
            .arg(testdata().join(archive))
            .arg("-C")
            .arg(dir)
            .status()
            .expect("running tar");
        assert!(status.success(), "unpacking {archive}");
    }
}

/// Creates `dir/<name>_<slot>.img` holding `content`, padded with zeros to `size` bytes.
pub fn put_image(dir: &Path, name: &str, slot: char, content: &[u8], size: u64) -> PathBuf {
    let path = dir.join(format!("{name}_{slot}.img"));
    let mut data = content.to_vec();
    data.resize(size as usize, 0);
    std::fs::write(&path, data).unwrap();
    path
}

/// A deterministic pseudo-random generator for test data (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Realistic partition content: runs of zeros, text-like compressible blocks and random blocks.
pub fn mixed_image(rng: &mut Rng, blocks: usize) -> Vec<u8> {
    let mut data = vec![0u8; blocks * 4096];
    for block in data.chunks_mut(4096) {
        match rng.below(4) {
            0 => {}
            1 => rng.fill(block),
            _ => text_block(rng, block),
        }
    }
    data
}

/// Fills `block` with compressible text: lines of letters drawn from one random word.
pub fn text_block(rng: &mut Rng, block: &mut [u8]) {
    let word = rng.next().to_le_bytes();
    for (i, b) in block.iter_mut().enumerate() {
        *b = if i % 13 == 0 {
            b'\n'
        } else {
            b'a' + word[i % 8] % 26
        };
    }
}

/// Apply options for the unsigned payloads [`build_payload`] makes: no key, and unsigned
/// payloads explicitly accepted (without that, every apply is refused with 29).
pub fn unsigned_options() -> abupdate::engine::ApplyOptions {
    abupdate::engine::ApplyOptions {
        keys: abupdate::payload::keys::TrustedKeys::accept_unsigned(),
        ..Default::default()
    }
}

/// Builds an unsigned payload at `out` (xz only, fast) from `(name, new image, old image)`.
pub fn build_payload(
    out: &Path,
    parts: &[(&str, PathBuf, Option<PathBuf>)],
) -> abupdate::build::BuildReport {
    use abupdate::build::{ops::Compressors, BuildOptions};
    let options = BuildOptions {
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        ..Default::default()
    };
    build_payload_with(out, parts, options)
}

/// Like [`build_payload`] with the caller's options.
pub fn build_payload_with(
    out: &Path,
    parts: &[(&str, PathBuf, Option<PathBuf>)],
    options: abupdate::build::BuildOptions,
) -> abupdate::build::BuildReport {
    let specs: Vec<_> = parts
        .iter()
        .map(|(name, new, old)| abupdate::build::PartitionSpec {
            name: (*name).to_owned(),
            new: new.clone(),
            old: old.clone(),
            append_verity: false,
        })
        .collect();
    abupdate::build::build(&specs, &options, out).unwrap()
}

/// Applies the unsigned payload at `payload` to a host device in `dir/dev` whose `system_a`
/// holds `old` and whose `system_b` is `new_len` zero bytes; returns the engine's result and
/// `system_b` afterwards.
pub fn apply_to_system(
    dir: &Path,
    payload: &Path,
    old: &[u8],
    new_len: usize,
) -> (
    abupdate::error::Result<abupdate::engine::ApplyReport>,
    Vec<u8>,
) {
    use abupdate::checkpoint_store::FileCheckpointStore;
    use abupdate::device::Device;
    use abupdate::engine::{self, Quiet};
    use abupdate::slot::Slot;

    let dev = dir.join("dev");
    std::fs::create_dir(&dev).unwrap();
    put_image(&dev, "system", 'a', old, old.len() as u64);
    put_image(&dev, "system", 'b', &[], new_len as u64);
    let device = Device::host(dev.clone(), Slot::A);
    let store = FileCheckpointStore::new(dir.join("state")).unwrap();
    let mut source = abupdate::source::Source::file(payload).unwrap();
    let result = engine::apply(
        &device,
        &mut source,
        &store,
        &(),
        &unsigned_options(),
        &Quiet,
    );
    (result, std::fs::read(dev.join("system_b.img")).unwrap())
}

/// Kills `child` (`kill -9`) after `delay`; `None` if it was killed, its output if it finished
/// first.
pub fn kill_after(
    mut child: std::process::Child,
    delay: std::time::Duration,
) -> Option<std::process::Output> {
    let deadline = std::time::Instant::now() + delay;
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        if std::time::Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}
