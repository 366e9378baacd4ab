//! Replays every seed of the `cow_parse` fuzz target through the target's own checks
//! (`fuzz/fuzz_targets/cow_parse_check.rs`): none may panic, and each seed listed in
//! `fuzz/seeds/cow_parse.expected` must give its listed outcome.
//!
//! `cargo test --test fuzz_seeds_cow regenerate_seeds -- --ignored` rewrites the generated
//! seeds and the list: COWs from our writer (v2 and v3, each compression, labels; without the
//! 2 MiB scratch area to keep them small) and broken variants that reach deeper checks than
//! random bytes would. Seeds named `crash-*` are kept, listed by hand.

mod common;

#[path = "../fuzz/fuzz_targets/cow_parse_check.rs"]
mod check;

use abupdate::cow::{write_image_cow, Compression, CowOptions, CowWriter};

#[test]
fn seeds_replay() {
    common::fuzz_seeds::replay("cow_parse", 20, check::outcome);
}

fn small_pair() -> (Vec<u8>, Vec<u8>) {
    let mut rng = common::Rng(0xc0_5eed);
    let old = common::mixed_image(&mut rng, 16);
    let mut new = old.clone();
    // A swap (a cycle), a shift (a chain of copies), zeros, an edit, fresh data.
    new.copy_within(4096..8192, 0);
    new[4096..8192].copy_from_slice(&old[..4096]);
    new.copy_within(6 * 4096..9 * 4096, 5 * 4096);
    new[13 * 4096..15 * 4096].fill(0);
    new[10 * 4096 + 5] ^= 1;
    rng.fill(&mut new[11 * 4096..13 * 4096]);
    (old, new)
}

fn ours(version: u16, alg: Compression, factor: u32) -> Vec<u8> {
    let (old, new) = small_pair();
    let opts = CowOptions {
        version,
        compression: alg,
        compression_factor: factor,
        scratch_space: false,
        cluster_ops: if version == 2 { 8 } else { 0 },
        ..CowOptions::default()
    };
    write_image_cow(&new, Some(&old), opts, Vec::new())
        .unwrap()
        .0
}

fn with_labels(version: u16) -> Vec<u8> {
    let (_, new) = small_pair();
    let opts = CowOptions {
        version,
        compression: Compression::Lz4,
        scratch_space: false,
        max_blocks: Some(16),
        ..CowOptions::default()
    };
    let mut w = CowWriter::new(opts, Vec::new()).unwrap();
    for (i, chunk) in new.chunks(4 * 4096).enumerate() {
        w.add_raw_blocks(i as u64 * 4, chunk).unwrap();
        w.add_label(i as u64 + 100).unwrap();
    }
    w.finalize().unwrap().0
}

fn patched(mut bytes: Vec<u8>, at: usize, value: &[u8]) -> Vec<u8> {
    bytes[at..at + value.len()].copy_from_slice(value);
    bytes
}

/// v3 without scratch: where op `i` starts.
fn v3_op(bytes: &[u8], i: usize) -> usize {
    let seq = u64::from_le_bytes(bytes[38..46].try_into().unwrap()) as usize;
    78 + seq * 4 + 4 * 16 + i * 16
}

#[test]
#[ignore = "rewrites fuzz/seeds; run by hand"]
fn regenerate_seeds() {
    let dir = common::fuzz_seeds::seeds_dir("cow_parse");
    let mut list = common::fuzz_seeds::clear_generated("cow_parse", |_| true);
    let mut put = |name: &str, data: Vec<u8>| {
        list.push_str(&format!("{name} {}\n", check::outcome(&data)));
        std::fs::write(dir.join(name), data).unwrap();
    };
    for alg in [
        Compression::None,
        Compression::Gz,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Brotli,
    ] {
        put(&format!("v2-{}.cow", alg.name()), ours(2, alg, 4096));
        put(&format!("v3-{}-4k.cow", alg.name()), ours(3, alg, 4096));
        put(&format!("v3-{}-64k.cow", alg.name()), ours(3, alg, 65536));
    }
    put("v2-labels.cow", with_labels(2));
    put("v3-labels.cow", with_labels(3));

    let v3 = ours(3, Compression::Lz4, 16384);
    let v2 = ours(2, Compression::Gz, 4096);
    put("bad-magic.cow", patched(v3.clone(), 0, b"!!WOcwoD"));
    put("truncated-header.cow", v3[..40].to_vec());
    put(
        "header-size-200.cow",
        patched(v3.clone(), 12, &200u16.to_le_bytes()),
    );
    put("v4.cow", patched(v3.clone(), 8, &4u16.to_le_bytes()));
    put(
        "v3-op-count-huge.cow",
        patched(v3.clone(), 54, &(1u64 << 40).to_le_bytes()),
    );
    put(
        "v3-op-count-max-huge.cow",
        patched(v3.clone(), 62, &u64::MAX.to_le_bytes()),
    );
    put(
        "v3-seq-count-huge.cow",
        patched(v3.clone(), 38, &(1u64 << 62).to_le_bytes()),
    );
    put(
        "v3-resume-count-huge.cow",
        patched(v3.clone(), 46, &u32::MAX.to_le_bytes()),
    );
    put(
        "v3-compression-9.cow",
        patched(v3.clone(), 70, &9u32.to_le_bytes()),
    );
    put(
        "v3-block-size-0.cow",
        patched(v3.clone(), 18, &0u32.to_le_bytes()),
    );
    put(
        "v3-cluster-ops.cow",
        patched(v3.clone(), 22, &16u32.to_le_bytes()),
    );
    // The last replace op.
    let n = u64::from_le_bytes(v3[54..62].try_into().unwrap()) as usize;
    let last = (0..n)
        .rev()
        .map(|i| v3_op(&v3, i))
        .find(|&at| v3[at + 15] >> 4 == 2)
        .unwrap();
    let info = u64::from_le_bytes(v3[last + 8..last + 16].try_into().unwrap());
    put(
        "v3-replace-source-off.cow",
        patched(v3.clone(), last + 8, &(info + 1).to_le_bytes()),
    );
    put(
        "v3-op-type-9.cow",
        patched(
            v3.clone(),
            last + 8,
            &((info & !(0xf << 60)) | (9 << 60)).to_le_bytes(),
        ),
    );
    put(
        "v3-factor-bits-7.cow",
        patched(v3.clone(), last + 8, &(info | (7 << 57)).to_le_bytes()),
    );
    put(
        "v3-data-length-huge.cow",
        patched(v3.clone(), last, &u32::MAX.to_le_bytes()),
    );
    let mut corrupt = v3.clone();
    let max = u64::from_le_bytes(v3[62..70].try_into().unwrap()) as usize;
    let data = v3_op(&v3, max);
    corrupt[data..data + 16].fill(0xff);
    put("v3-data-corrupt.cow", corrupt);
    // The first sequence entry names a block no op writes.
    put(
        "v3-sequence-dangling.cow",
        patched(v3.clone(), 78, &999u32.to_le_bytes()),
    );
    put("v2-truncated.cow", v2[..v2.len() - 30].to_vec());
    put(
        "v2-footer-count.cow",
        patched(v2.clone(), v2.len() - 84 + 12, &7u64.to_le_bytes()),
    );
    put(
        "v2-cluster-1.cow",
        patched(v2.clone(), 22, &1u32.to_le_bytes()),
    );
    put(
        "v2-minor-1.cow",
        patched(v2.clone(), 10, &1u16.to_le_bytes()),
    );
    put(
        "v2-op-size-16.cow",
        patched(v2.clone(), 16, &16u16.to_le_bytes()),
    );
    // The first op (a sequence op with cluster ops 8) with a data length not a multiple of 4.
    put(
        "v2-sequence-odd.cow",
        patched(v2.clone(), 38 + 2, &3u16.to_le_bytes()),
    );
    put("v2-op-type-9.cow", patched(v2.clone(), 38 + 20, &[9]));
    put("v2-cluster-skip-huge.cow", {
        let mut b = v2.clone();
        // Turn the second op into a cluster op that jumps past the end of the file.
        b[38 + 20] = 5;
        b[38 + 20 + 12..38 + 40].copy_from_slice(&(u64::MAX - 10).to_le_bytes());
        b
    });
    put("empty.cow", Vec::new());

    std::fs::write(common::fuzz_seeds::expected_path("cow_parse"), list).unwrap();
}
