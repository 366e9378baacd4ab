//! The benchmark's payload and device directory.
//!
//! The payload is the one `cargo bench --bench apply` caches, when there is one of the size
//! asked for: its directory (`<target>/tmp/abupdate-bench/<N>MiB-...`, or under `/var/tmp` when
//! the target directory is a tmpfs) holds `payload.bin`, `payload_properties.txt`,
//! `ota-cert.pem` and a `complete` marker. `ABUPDATE_BENCH_FIXTURE=DIR` names such a directory
//! outright (it is only read). Otherwise a payload in the same format is built here and cached
//! beside the other one. The device directory is always this benchmark's own.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use abupdate::build::ops::Compressors;
use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::device::Slot;
use abupdate::payload::signature::Signer;
use abupdate::payload::{Manifest, PayloadHeader, HEADER_SIZE};
use abupdate::slot::MiscBootControl;

/// Bump when the generated content changes, so stale caches are not reused.
const GENERATOR_VERSION: u32 = 1;
const BLOCK: usize = 4096;

/// Partitions and their share of the total size, in sixteenths (as the apply benchmark has).
const PARTITIONS: [(&str, u64); 4] = [("system", 8), ("vendor", 4), ("product", 3), ("odm", 1)];

/// A signed payload and a device directory to apply it to.
pub struct Fixture {
    pub payload: PathBuf,
    pub properties: PathBuf,
    pub cert: PathBuf,
    pub device: PathBuf,
    /// Target partitions and their sizes, from the payload's manifest.
    pub partitions: Vec<(String, u64)>,
}

impl Fixture {
    pub fn prepare(mib: u64) -> Result<Self> {
        let root = cache_root()?;
        let dir = match std::env::var_os("ABUPDATE_BENCH_FIXTURE") {
            Some(dir) => PathBuf::from(dir),
            None => match apply_bench_cache(&root, mib)? {
                Some(dir) => dir,
                None => {
                    let dir = root.join(format!("{mib}MiB-http-g{GENERATOR_VERSION}"));
                    if !dir.join("complete").exists() {
                        build_payload(&dir, mib)?;
                    }
                    dir
                }
            },
        };
        println!("payload: {}", dir.display());
        let payload = dir.join("payload.bin");
        let partitions = partitions(&payload)?;
        let device = root.join(format!("http-device-{mib}MiB"));
        prepare_device(&device, &partitions)?;
        Ok(Fixture {
            payload,
            properties: dir.join("payload_properties.txt"),
            cert: dir.join("ota-cert.pem"),
            device,
            partitions,
        })
    }

    pub fn partition_bytes(&self) -> u64 {
        self.partitions.iter().map(|(_, size)| size).sum()
    }

    /// Resets the device for a fresh apply from slot A into slot B: no checkpoint, a new
    /// `misc`, and slot B out of the page cache (a device's inactive slot is not cached).
    pub fn reset_device(&self) -> Result<()> {
        let _ = fs::remove_dir_all(self.device.join("state"));
        let misc = self.device.join("misc.img");
        let _ = fs::remove_file(&misc);
        MiscBootControl::create_image(&misc, Slot::A)?;
        for (name, _) in &self.partitions {
            let file = OpenOptions::new()
                .write(true)
                .open(self.device.join(format!("{name}_b.img")))?;
            file.sync_all()?;
            nix::fcntl::posix_fadvise(
                file.as_fd(),
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            )
            .context("posix_fadvise")?;
        }
        Ok(())
    }
}

/// Where caches live: the target directory, unless it is a tmpfs (RAM would make the writes
/// and syncs meaningless), then `/var/tmp`; the same rule as the apply benchmark's.
fn cache_root() -> Result<PathBuf> {
    let target_tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(&target_tmp)?;
    let on_tmpfs = nix::sys::statfs::statfs(&target_tmp)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false);
    let base = if on_tmpfs {
        PathBuf::from("/var/tmp")
    } else {
        target_tmp
    };
    let root = base.join("abupdate-bench");
    fs::create_dir_all(&root)?;
    Ok(root)
}

/// A complete payload of `mib` MiB cached by the apply benchmark, if there is one.
fn apply_bench_cache(root: &Path, mib: u64) -> Result<Option<PathBuf>> {
    let prefix = format!("{mib}MiB-seed");
    for entry in fs::read_dir(root)? {
        let path = entry?.path();
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(&prefix));
        if named && path.join("complete").exists() {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The target partitions a payload writes and their sizes, from its manifest.
fn partitions(payload: &Path) -> Result<Vec<(String, u64)>> {
    let mut file = File::open(payload).with_context(|| format!("{}", payload.display()))?;
    let mut header = [0u8; HEADER_SIZE];
    file.read_exact(&mut header)?;
    let header = PayloadHeader::parse(&header, None)?;
    let mut manifest = vec![0u8; (header.metadata_size() as usize).saturating_sub(HEADER_SIZE)];
    file.read_exact(&mut manifest)?;
    let manifest = Manifest::parse(&manifest, None)?;
    if manifest.is_delta() {
        bail!(
            "{} is a delta; the benchmark applies a full payload",
            payload.display()
        );
    }
    Ok(manifest
        .partitions
        .iter()
        .map(|p| (p.name.clone(), p.new_info.size))
        .collect())
}

/// Slot A empty (a full payload never reads it), slot B written once so that every apply
/// overwrites allocated blocks, as on a device.
fn prepare_device(device: &Path, partitions: &[(String, u64)]) -> Result<()> {
    fs::create_dir_all(device)?;
    let zeros = vec![0u8; 1 << 20];
    for (name, size) in partitions {
        File::create(device.join(format!("{name}_a.img")))?.set_len(*size)?;
        let target = device.join(format!("{name}_b.img"));
        if fs::metadata(&target).map(|m| m.len()).ok() == Some(*size) {
            continue;
        }
        let mut out = BufWriter::new(File::create(&target)?);
        let mut left = *size;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            out.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        out.flush()?;
    }
    Ok(())
}

/// Builds a signed full payload (XZ) of `mib` MiB of generated images into `dir`.
fn build_payload(dir: &Path, mib: u64) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    let images = dir.join("images");
    fs::create_dir_all(&images)?;
    let started = Instant::now();
    let mut rng = Rng(0x00ab_0bda_7e00_4777);
    let chunk = 2u64 << 20;
    let mut specs = Vec::new();
    for (name, share) in PARTITIONS {
        let size = ((mib << 20) * share / 16 / chunk).max(1) * chunk;
        let path = images.join(format!("{name}.img"));
        write_image(&path, size, &mut rng)?;
        specs.push(PartitionSpec {
            name: name.to_owned(),
            new: path,
            old: None,
            append_verity: false,
        });
    }
    println!(
        "payload: generated {mib} MiB of images in {:.1?}",
        started.elapsed()
    );
    let started = Instant::now();
    let signer = Signer::generate(2048)?;
    fs::write(dir.join("ota-cert.pem"), signer.public_key_pem()?)?;
    let options = BuildOptions {
        signer: Some(signer),
        compressors: Compressors {
            xz: true,
            bzip2: false,
        },
        ..BuildOptions::default()
    };
    let report = build::build(&specs, &options, &dir.join("payload.bin"))?;
    fs::write(
        dir.join("payload_properties.txt"),
        report.properties.to_text(),
    )?;
    println!("payload: built in {:.1?}", started.elapsed());
    fs::remove_dir_all(&images)?;
    fs::write(dir.join("complete"), b"")?;
    Ok(())
}

/// Runs of 4 KiB to 4 MiB of one kind each, in equal shares by expectation: zeros, random bytes
/// (media, compressed files), and text drawn from a small vocabulary (compresses several-fold).
fn write_image(path: &Path, size: u64, rng: &mut Rng) -> Result<()> {
    let words: Vec<Vec<u8>> = (0..512)
        .map(|_| {
            let len = 2 + (rng.next() % 9) as usize;
            (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
        })
        .collect();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut block = vec![0u8; BLOCK];
    let mut left = size as usize / BLOCK;
    while left > 0 {
        let run = (1usize << (rng.next() % 11)).min(left);
        let kind = rng.next() % 3;
        for _ in 0..run {
            match kind {
                0 => block.fill(0),
                1 => block
                    .chunks_mut(8)
                    .for_each(|c| c.copy_from_slice(&rng.next().to_le_bytes())),
                _ => {
                    let mut at = 0;
                    while at < BLOCK {
                        let word = &words[(rng.next() % words.len() as u64) as usize];
                        for &b in word.iter().chain(b" ") {
                            if at < BLOCK {
                                block[at] = b;
                                at += 1;
                            }
                        }
                    }
                }
            }
            out.write_all(&block)?;
        }
        left -= run;
    }
    out.flush()?;
    Ok(())
}

/// xorshift64*: fast and deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
