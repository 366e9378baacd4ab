//! Hash tree + FEC (2 roots) over a file of realistic mixed data, against
//! `veritysetup format --no-superblock --fec-device` on the same file in the same run.
//!
//! `cargo bench --bench verity`; `ABUPDATE_BENCH_MIB=64` for a quick run (default 1024).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use abupdate::device::verity_image::build_image;
use abupdate::verity::VerityLayout;
use abupdate::verity::{FecRoots, HashAlgorithm};

const SALT: [u8; 32] = *b"abupdate verity benchmark salt!!";

fn main() {
    let mib: u64 = std::env::var("ABUPDATE_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    // Under the target directory, which is on disk: /tmp may be a RAM-backed tmpfs.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verity-bench");
    fs::create_dir_all(&dir).expect("bench dir");
    let data = dir.join("data");
    write_mixed_data(&data, mib << 20);
    // Both contenders read from a warm page cache.
    warm(&data);

    let layout = |fec| VerityLayout {
        fec_roots: fec,
        ..VerityLayout::new(HashAlgorithm::Sha256, &SALT, mib << 20)
    };
    let file = File::open(&data).expect("open data");
    let (tree_only, _) = time(|| build_image(&file, &layout(None)).expect("tree"));
    let (ours, built) =
        time(|| build_image(&file, &layout(Some(FecRoots::DEFAULT))).expect("tree + FEC"));

    let (tree, fec) = (dir.join("tree"), dir.join("fec"));
    let _ = (fs::remove_file(&tree), fs::remove_file(&fec));
    let (theirs, output) = time(|| {
        Command::new("veritysetup")
            .args([
                "format",
                "--format=1",
                "--hash=sha256",
                "--data-block-size=4096",
            ])
            .args(["--hash-block-size=4096", "--no-superblock", "--fec-roots=2"])
            .arg(format!("--salt={}", abupdate::hex::encode(&SALT)))
            .arg("--fec-device")
            .args([&fec, &data, &tree])
            .output()
            .expect("run veritysetup (Debian package cryptsetup-bin)")
    });
    assert!(
        output.status.success(),
        "veritysetup: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!(
            "Root hash:      \t{}",
            abupdate::hex::encode(&built.root_digest)
        )),
        "{stdout}"
    );
    assert!(
        fs::read(&tree).expect("tree") == built.tree,
        "hash trees differ"
    );
    assert!(
        fs::read(&fec).expect("fec") == built.fec,
        "FEC areas differ"
    );

    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    println!("verity over {mib} MiB (sha256, salted, FEC roots 2), outputs identical:");
    println!(
        "  abupdate hash tree only   {:>8.3} s  {:>7.0} MiB/s",
        tree_only.as_secs_f64(),
        rate(tree_only)
    );
    println!(
        "  abupdate tree + FEC       {:>8.3} s  {:>7.0} MiB/s",
        ours.as_secs_f64(),
        rate(ours)
    );
    println!(
        "  veritysetup tree + FEC    {:>8.3} s  {:>7.0} MiB/s",
        theirs.as_secs_f64(),
        rate(theirs)
    );
    println!(
        "  speedup                   {:>8.2}x",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    let _ = fs::remove_dir_all(&dir);
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

/// A partition-like mix per 4 KiB block: a quarter zeros, a third random (compressed files),
/// the rest repetitive text with variations (code, configs).
fn write_mixed_data(path: &Path, len: u64) {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let words: Vec<&[u8]> = [
        "lib",
        "android",
        "system",
        "vendor",
        "service",
        "<manifest>",
        "0x7f",
        "\n  ",
    ]
    .iter()
    .map(|w| w.as_bytes())
    .collect();
    let mut out =
        std::io::BufWriter::with_capacity(8 << 20, File::create(path).expect("create data"));
    let mut block = vec![0u8; 4096];
    for _ in 0..len / 4096 {
        match next() % 12 {
            0..=2 => block.fill(0),
            3..=6 => block
                .chunks_exact_mut(8)
                .for_each(|c| c.copy_from_slice(&next().to_le_bytes())),
            _ => {
                let mut at = 0;
                while at < block.len() {
                    let r = next();
                    let word = words[(r % words.len() as u64) as usize];
                    let n = word.len().min(block.len() - at);
                    block[at..at + n].copy_from_slice(&word[..n]);
                    if n < block.len() - at {
                        block[at + n] = b' ' + (r >> 32) as u8 % 64;
                    }
                    at += n + 1;
                }
            }
        }
        out.write_all(&block).expect("write data");
    }
    out.flush().expect("flush data");
}

fn warm(path: &Path) {
    let mut buf = vec![0u8; 8 << 20];
    let mut f = File::open(path).expect("open data");
    while f.read(&mut buf).expect("read data") > 0 {}
}
