use super::*;

fn sample(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        match x % 5 {
            0 => out.extend_from_slice(b"the quick brown fox "),
            1 => out.extend(std::iter::repeat(b'a').take((x % 40) as usize)),
            2 => out.push((x >> 8) as u8),
            _ => out.extend_from_slice(format!("k{}={} ", x % 31, x % 7).as_bytes()),
        }
    }
    out.truncate(n);
    out
}

#[test]
fn blocks_decode_to_what_they_consumed() {
    for (i, n) in [0usize, 5, 12, 13, 100, 4096, 20000, 70000]
        .into_iter()
        .enumerate()
    {
        let data = sample(n, i as u32 + 7);
        for target in [1usize, 16, 300, 4096, 100_000] {
            let mut results = vec![compress_dest_size(&data, target)];
            for level in [1, 4, 9, 10, 11, 12] {
                results.push(compress_hc_dest_size(&data, target, level));
            }
            for r in results {
                let Some((block, consumed)) = r else { continue };
                assert!(block.len() <= target.max(1), "n={n} target={target}");
                let back = decompress_partial(&block, consumed).unwrap();
                assert_eq!(back, &data[..consumed], "n={n} target={target}");
            }
        }
    }
}

#[test]
fn refuses_malformed_blocks() {
    // Offset 0, an offset before the output, and a truncated literal run.
    assert!(decompress_partial(&[0x10, b'a', 0, 0], 8).is_none());
    assert!(decompress_partial(&[0x10, b'a', 2, 0], 8).is_none());
    assert!(decompress_partial(&[0x50, b'a'], 5).is_none());
    assert_eq!(
        decompress_partial(&[0x10, b'a', 1, 0], 5).unwrap(),
        b"aaaaa"
    );
}
