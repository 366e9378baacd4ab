//! `abupdate::lz4` against the real liblz4 (Debian's liblz4.so.1 through python3's ctypes,
//! tests/lz4_oracle.py): the same input and destination budget must give the same block, byte
//! for byte, and the same consumed length, for the fast destSize compressor and the HC one at
//! every level. Needs python3 and liblz4 (.ci/run installs them).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use abupdate::lz4;

struct Case {
    /// None: `LZ4_compress_destSize`; Some(level): `LZ4_compress_HC_destSize`.
    level: Option<i32>,
    target: usize,
    data: Vec<u8>,
}

fn xorshift(x: &mut u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x
}

/// Inputs of the kinds files hold: text, random bytes, long runs (liblz4's repeated-pattern
/// path), short periodic patterns, structured binary, and mixtures.
fn input(kind: u32, n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let mut out = Vec::with_capacity(n + 64);
    let words = [
        "update",
        "engine",
        "payload",
        "partition",
        "the",
        "of",
        "block",
        "android",
        "slot",
    ];
    while out.len() < n {
        let r = xorshift(&mut x);
        match kind {
            0 => {
                out.extend_from_slice(words[(r % 9) as usize].as_bytes());
                out.push(if r % 11 == 0 { b'\n' } else { b' ' });
            }
            1 => out.extend_from_slice(&r.to_le_bytes()),
            2 => out.extend(std::iter::repeat((r % 3) as u8 * 0x55).take((r % 300) as usize + 1)),
            3 => out.extend_from_slice(&[0xAB, 0xCD, (r % 2) as u8, 0xAB]),
            4 => {
                // Record-like binary: small counters, pointers, zero padding.
                out.extend_from_slice(&(out.len() as u32 / 16).to_le_bytes());
                out.extend_from_slice(&[0, 0, 0x40, (r % 4) as u8]);
                out.extend_from_slice(&(r % 1000).to_le_bytes());
                out.extend_from_slice(&[0; 4]);
            }
            _ => {
                let k = r % 4;
                let piece = input(k, (r % 700) as usize + 1, r);
                out.extend_from_slice(&piece);
            }
        }
    }
    out.truncate(n);
    out
}

fn oracle(cases: &[Case]) -> Vec<(i32, i32, Vec<u8>)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lz4_oracle.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (see .ci/run)");
    let mut stdin = child.stdin.take().unwrap();
    let mut req = Vec::new();
    for c in cases {
        req.push(c.level.is_some() as u8);
        req.extend_from_slice(&c.level.unwrap_or(0).to_le_bytes());
        req.extend_from_slice(&(c.target as u32).to_le_bytes());
        req.extend_from_slice(&(c.data.len() as u32).to_le_bytes());
        req.extend_from_slice(&c.data);
    }
    let writer = std::thread::spawn(move || {
        stdin.write_all(&req).unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        out.status.success(),
        "the liblz4 oracle failed (Debian's liblz4-1, see .ci/run): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stderr).trim());
    let mut res = Vec::new();
    let mut p = &out.stdout[..];
    while !p.is_empty() {
        let ret = i32::from_le_bytes(p[..4].try_into().unwrap());
        let consumed = i32::from_le_bytes(p[4..8].try_into().unwrap());
        let n = ret.max(0) as usize;
        res.push((ret, consumed, p[8..8 + n].to_vec()));
        p = &p[8 + n..];
    }
    assert_eq!(res.len(), cases.len());
    res
}

fn ours(c: &Case) -> Option<(Vec<u8>, usize)> {
    match c.level {
        None => lz4::compress_dest_size(&c.data, c.target),
        Some(l) => lz4::compress_hc_dest_size(&c.data, c.target, l),
    }
}

fn check(cases: Vec<Case>) {
    let want = oracle(&cases);
    let mut bad = 0;
    for (c, (ret, consumed, block)) in cases.iter().zip(want) {
        let got = ours(c);
        let same = match &got {
            None => ret == 0,
            Some((b, n)) => ret > 0 && *b == block && *n == consumed as usize,
        };
        if !same {
            bad += 1;
            if bad <= 5 {
                let (gl, gn) = got.as_ref().map_or((0, 0), |(b, n)| (b.len(), *n));
                let first = got
                    .as_ref()
                    .and_then(|(b, _)| b.iter().zip(&block).position(|(x, y)| x != y));
                eprintln!(
                    "MISMATCH level {:?} target {} input {}: liblz4 {ret} bytes/{consumed} consumed, ours {gl}/{gn}, first differing byte {first:?}",
                    c.level, c.target, c.data.len()
                );
            }
        }
    }
    assert_eq!(bad, 0, "{bad} cases differ from liblz4");
}

const LEVELS: [Option<i32>; 15] = [
    None,
    Some(0),
    Some(1),
    Some(2),
    Some(3),
    Some(4),
    Some(5),
    Some(6),
    Some(7),
    Some(8),
    Some(9),
    Some(10),
    Some(11),
    Some(12),
    Some(13),
];

#[test]
fn small_inputs_and_budgets_match_liblz4() {
    let mut cases = Vec::new();
    for kind in 0..6 {
        for (i, n) in [0usize, 1, 7, 12, 13, 14, 40, 300, 1000, 5000]
            .into_iter()
            .enumerate()
        {
            let data = input(kind, n, (kind * 100 + i as u32) + 1);
            for target in [1usize, 2, 5, 6, 11, 17, 40, 128, 700, 6000] {
                for level in LEVELS {
                    cases.push(Case {
                        level,
                        target,
                        data: data.clone(),
                    });
                }
            }
        }
    }
    check(cases);
}

/// Inputs around the 64 KiB switch of the fast compressor's tables, and one past it, at the
/// levels a debug build runs quickly (the high levels search thousands of candidates).
#[test]
fn large_inputs_match_liblz4() {
    let mut cases = Vec::new();
    for kind in 0..6 {
        for (i, n) in [65_546usize, 65_547, 150_000].into_iter().enumerate() {
            let data = input(kind, n, kind * 7 + i as u32 + 3);
            for target in [4096usize, 70_000, 200_000] {
                for level in [None, Some(2), Some(9), Some(10)] {
                    // 70,000 and 200,000 are both past the bound for 64 KiB inputs.
                    let redundant = n < 100_000 && target == 200_000;
                    if redundant || (n > 100_000 && target > 4096 && level.is_some()) {
                        continue;
                    }
                    cases.push(Case {
                        level,
                        target,
                        data: data.clone(),
                    });
                }
            }
        }
    }
    check(cases);
}

/// What EROFS does: each 4 KiB cluster is compressed from the rest of the file onwards.
#[test]
fn erofs_style_clusters_match_liblz4() {
    let mut cases = Vec::new();
    for kind in [0u32, 4, 5] {
        let data = input(kind, 120_000, kind + 40);
        for level in [None, Some(9), Some(12)] {
            let mut at = 0;
            while at < data.len() {
                let c = Case {
                    level,
                    target: 4096,
                    data: data[at..].to_vec(),
                };
                let (_, n) = ours(&c).unwrap();
                cases.push(c);
                at += n.max(1);
            }
        }
    }
    check(cases);
}
