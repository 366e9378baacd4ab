//! The benchmark's input: partition images with a realistic mix of content, a signed full
//! payload built from them with the library's builder (XZ only), and a host device directory.
//! Everything is cached on real disk, keyed by size and seed, so re-runs skip the build.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use abupdate::boot_control::MiscBootControl;
use abupdate::build::ops::Compressors;
use abupdate::build::{self, BuildOptions, PartitionSpec};
use abupdate::payload::manifest::DynamicPartitions;
use abupdate::payload::signature::Signer;
use abupdate::slot::Slot;

/// Bump when the generated content changes, so stale caches are not reused.
const GENERATOR_VERSION: u32 = 1;

/// The seed of the benchmark payload, shared by the file and HTTP apply benchmarks so both
/// measure (and cache) the same payload.
pub const SEED: u64 = 0x00ab_0bda_7e00_5eed;
const BLOCK: usize = 4096;

/// Partitions and their share of the total size, in sixteenths.
pub const PARTITIONS: [(&str, u64); 4] = [("system", 8), ("vendor", 4), ("product", 3), ("odm", 1)];

/// A built payload and where to apply it.
pub struct Fixture {
    pub dir: PathBuf,
    pub payload: PathBuf,
    pub properties: PathBuf,
    pub cert: PathBuf,
    pub device: PathBuf,
    pub partition_bytes: u64,
}

impl Fixture {
    /// Opens the cached fixture for `mib` MiB and `seed`, building it first if needed.
    pub fn prepare(mib: u64, seed: u64) -> Result<Self> {
        Self::prepare_with(mib, seed, None)
    }

    /// [`Fixture::prepare`] of a payload that carries `dynamic_partition_metadata`: the same
    /// images, cached apart under the variant's `tag`.
    pub fn prepare_with(
        mib: u64,
        seed: u64,
        dynamic: Option<(&str, DynamicPartitions)>,
    ) -> Result<Self> {
        let root = cache_root()?;
        let tag = dynamic
            .as_ref()
            .map(|(tag, _)| format!("-{tag}"))
            .unwrap_or_default();
        let dir = root.join(format!("{mib}MiB-seed{seed:x}-g{GENERATOR_VERSION}{tag}"));
        let fixture = Fixture {
            payload: dir.join("payload.bin"),
            properties: dir.join("payload_properties.txt"),
            cert: dir.join("ota-cert.pem"),
            device: dir.join("device"),
            partition_bytes: sizes(mib).iter().map(|(_, s)| s).sum(),
            dir,
        };
        if fixture.dir.join("complete").exists() {
            println!("payload: cached in {}", fixture.dir.display());
        } else {
            fixture.build(mib, seed, dynamic.map(|(_, d)| d))?;
        }
        Ok(fixture)
    }

    fn build(&self, mib: u64, seed: u64, dynamic: Option<DynamicPartitions>) -> Result<()> {
        let _ = fs::remove_dir_all(&self.dir);
        let images = self.dir.join("images");
        fs::create_dir_all(&images)?;
        fs::create_dir_all(&self.device)?;
        let t = Instant::now();
        let mut rng = Rng::new(seed);
        let mut specs = Vec::new();
        for (name, size) in sizes(mib) {
            let path = images.join(format!("{name}.img"));
            write_image(&path, size, &mut rng)?;
            // The running slot's copy is never read by a full payload; the target slot is
            // written once here so later applies overwrite allocated blocks, as on a device.
            File::create(self.device.join(format!("{name}_a.img")))?.set_len(size)?;
            fs::copy(&path, self.device.join(format!("{name}_b.img")))?;
            specs.push(PartitionSpec {
                name: name.to_owned(),
                new: path,
                old: None,
                append_verity: false,
            });
        }
        println!(
            "payload: generated {mib} MiB of images in {:.1?}",
            t.elapsed()
        );

        let t = Instant::now();
        let signer = Signer::generate(2048)?;
        fs::write(&self.cert, signer.public_key_pem()?)?;
        let options = BuildOptions {
            signer: Some(signer),
            compressors: Compressors {
                xz: true,
                bzip2: false,
            },
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            dynamic,
            ..BuildOptions::default()
        };
        let report = build::build(&specs, &options, &self.payload)?;
        fs::write(&self.properties, report.properties.to_text())?;
        // The device's slot B holds a copy of each image; the originals are not needed again.
        fs::remove_dir_all(&images)?;
        println!(
            "payload: built {} ({} MiB) in {:.1?}",
            self.payload.display(),
            fs::metadata(&self.payload)?.len() >> 20,
            t.elapsed()
        );
        fs::write(self.dir.join("complete"), b"")?;
        Ok(())
    }

    /// Resets the device directory for a fresh apply from slot A into slot B: no checkpoint,
    /// a new `misc`, and the target partitions out of the page cache (a device's inactive slot
    /// is not cached when an update starts).
    pub fn reset_device(&self) -> Result<()> {
        let _ = fs::remove_dir_all(self.device.join("state"));
        let misc = self.device.join("misc.img");
        let _ = fs::remove_file(&misc);
        MiscBootControl::create_image(&misc, Slot::A)?;
        let super_img = self.device.join("super.img");
        let targets: Vec<PathBuf> = if super_img.exists() {
            vec![super_img]
        } else {
            PARTITIONS
                .iter()
                .map(|(name, _)| self.device.join(format!("{name}_b.img")))
                .collect()
        };
        for target in targets {
            let file = OpenOptions::new().write(true).open(target)?;
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

/// Where fixtures live: the target directory, unless that is a tmpfs (RAM would make the
/// writes and fsyncs meaningless), then `/var/tmp`.
pub fn cache_root() -> Result<PathBuf> {
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

/// Partition sizes for a `mib` MiB total, whole 2 MiB chunks each.
pub fn sizes(mib: u64) -> Vec<(&'static str, u64)> {
    let chunk = 2u64 << 20;
    PARTITIONS
        .iter()
        .map(|&(name, share)| (name, ((mib << 20) * share / 16 / chunk).max(1) * chunk))
        .collect()
}

/// Writes an image made of runs (4 KiB to 4 MiB) of four kinds of content in equal shares by
/// expectation: zeros, random bytes (compressed media, APKs), text, and instruction-like words.
pub fn write_image(path: &Path, size: u64, rng: &mut Rng) -> Result<()> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let vocabulary = Vocabulary::new(rng);
    let mut block = vec![0u8; BLOCK];
    let mut left = size as usize / BLOCK;
    while left > 0 {
        let run = (1usize << (rng.next() % 11)).min(left);
        let kind = rng.next() % 4;
        for _ in 0..run {
            match kind {
                0 => block.fill(0),
                1 => block
                    .chunks_mut(8)
                    .for_each(|c| c.copy_from_slice(&rng.next().to_le_bytes())),
                2 => vocabulary.fill(&mut block, rng),
                _ => fill_code(&mut block, rng),
            }
            out.write_all(&block)?;
        }
        left -= run;
    }
    out.flush()?;
    Ok(())
}

/// Words with a skewed frequency, as in configuration files, XML and logs: compresses about
/// 4x with xz.
struct Vocabulary {
    words: Vec<Vec<u8>>,
}

impl Vocabulary {
    fn new(rng: &mut Rng) -> Self {
        let words = (0..2048)
            .map(|_| {
                let len = 2 + (rng.next() % 10) as usize;
                (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
            })
            .collect();
        Vocabulary { words }
    }

    fn fill(&self, block: &mut [u8], rng: &mut Rng) {
        let mut at = 0;
        while at < block.len() {
            let r = rng.next();
            // The product of two uniform picks favours small indices: a few common words.
            let index = ((r & 0x7ff) * ((r >> 11) & 0x7ff)) >> 11;
            let word = &self.words[index as usize];
            let sep: &[u8] = match (r >> 22) % 16 {
                0 => b".\n",
                1 => b", ",
                2 => b"=\"",
                _ => b" ",
            };
            for &b in word.iter().chain(sep) {
                if at == block.len() {
                    return;
                }
                block[at] = b;
                at += 1;
            }
        }
    }
}

/// 32-bit words from a small set of opcodes with random register and immediate fields, like
/// machine code: compresses about 2x.
fn fill_code(block: &mut [u8], rng: &mut Rng) {
    const OPCODES: [u32; 16] = [
        0x9100_0000,
        0xf940_0000,
        0xf900_0000,
        0xaa00_03e0,
        0x9400_0000,
        0xb400_0000,
        0x5400_0000,
        0x1100_0000,
        0xb940_0000,
        0xb900_0000,
        0x7100_001f,
        0x3940_0000,
        0xd65f_03c0,
        0xa9bf_7bfd,
        0x2a00_03e0,
        0x8b00_0000,
    ];
    for word in block.chunks_mut(4) {
        let r = rng.next();
        let op = OPCODES[(r & 15) as usize];
        let fields = ((r >> 4) as u32 & 0x3ff) | (((r >> 14) as u32 & 0x3f) << 10);
        word.copy_from_slice(&(op | fields).to_le_bytes());
    }
}

/// xorshift64*: fast, deterministic, good enough to defeat a compressor.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
