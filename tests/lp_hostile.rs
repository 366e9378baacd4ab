//! Hostile `super` metadata: each kind of damage gives status 34 (`SlotError`) with a
//! message naming what is wrong, never a panic. Every case is also an input of the `lp_parse`
//! fuzz target, run through its checks (`fuzz/fuzz_targets/lp_parse_check.rs`); the seed
//! corpus `fuzz/seeds/lp_parse/` is replayed against `fuzz/seeds/lp_parse.expected`.
//!
//! `cargo test --test lp_hostile regenerate_seeds -- --ignored` rewrites the seeds.

mod common;

#[path = "../fuzz/fuzz_targets/lp_parse_check.rs"]
mod check;

use std::path::PathBuf;

use abupdate::lp::{flash_image, read_slot, Geometry, NewSuper, ATTR_READONLY, ATTR_UPDATED};
use abupdate::ErrorCode;

const MIB: u64 = 1024 * 1024;

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A valid layout: groups default, main_a (32 MiB), main_b; partitions system_a (8 MiB),
/// vendor_a (1 MiB), system_b (empty); header 10.0 (or 10.2 with `vab`).
fn base(vab: bool) -> (Vec<u8>, Vec<u8>) {
    let mut s = NewSuper::new(64 * MIB, 65536, 3)
        .group("main_a", 32 * MIB)
        .group("main_b", 32 * MIB)
        .partition("system_a", ATTR_READONLY, 8 * MIB, Some("main_a"))
        .partition("vendor_a", ATTR_READONLY, MIB, Some("main_a"))
        .partition("system_b", ATTR_READONLY, 0, Some("main_b"));
    s.virtual_ab = vab;
    let (g, m) = s.build().unwrap();
    (g.to_bytes()[..52].to_vec(), m.to_bytes(&g).unwrap())
}

fn header_size(slot: &[u8]) -> usize {
    u32_at(slot, 8) as usize
}

/// Absolute offset of entry `i` of table `t` (0 partitions, 1 extents, 2 groups, 3 devices).
fn entry(slot: &[u8], t: usize, i: usize) -> usize {
    let desc = 80 + 12 * t;
    header_size(slot) + u32_at(slot, desc) as usize + i * u32_at(slot, desc + 8) as usize
}

fn fix_header(slot: &mut [u8]) {
    let hs = header_size(slot).min(256);
    slot[12..44].fill(0);
    let sum = sha256(&slot[..hs]);
    slot[12..44].copy_from_slice(&sum);
}

/// Recomputes the tables checksum (over what the header says the tables are) and the header's.
fn fix(slot: &mut [u8]) {
    let hs = header_size(slot).min(256);
    let ts = u32_at(slot, 44) as usize;
    if let Some(tables) = slot.get(hs..hs + ts) {
        let sum = sha256(tables);
        slot[48..80].copy_from_slice(&sum);
    }
    fix_header(slot);
}

fn fix_geometry(g: &mut [u8]) {
    g[8..40].fill(0);
    let sum = sha256(&g[..52]);
    g[8..40].copy_from_slice(&sum);
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    /// A piece of the error message.
    says: &'static str,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut geo = |name, says, f: fn(&mut Vec<u8>)| {
        // The whole input is mutated, so a truncation cuts the geometry struct itself.
        let (mut g, slot) = base(false);
        g.extend_from_slice(&slot);
        f(&mut g);
        out.push(Case {
            name,
            input: g,
            says,
        });
    };
    geo("geometry-bad-magic", "geometry has a bad magic", |g| {
        g[0] ^= 1;
        fix_geometry(g)
    });
    geo("geometry-bad-checksum", "geometry checksum", |g| g[41] ^= 1);
    geo("geometry-struct-size", "geometry struct size", |g| {
        put32(g, 4, 56);
        fix_geometry(g)
    });
    geo("geometry-zero-slots", "zero metadata slots", |g| {
        put32(g, 44, 0);
        fix_geometry(g)
    });
    geo(
        "geometry-max-size-unaligned",
        "not a non-zero multiple of 512",
        |g| {
            put32(g, 40, 65536 + 100);
            fix_geometry(g)
        },
    );
    geo("geometry-block-size-zero", "logical block size 0", |g| {
        put32(g, 48, 0);
        fix_geometry(g)
    });
    geo("geometry-region-overflow", "overflows 64 bits", |g| {
        put32(g, 40, u32::MAX - 511);
        put32(g, 44, u32::MAX);
        fix_geometry(g)
    });
    geo("geometry-truncated", "shorter than the struct", |g| {
        g.truncate(51)
    });
    geo(
        "geometry-tiny-max-size",
        "do not fit a 512-byte metadata slot",
        |g| {
            // A 512-byte slot cuts the 10.0 header's tables off.
            put32(g, 40, 512);
            fix_geometry(g)
        },
    );

    let mut meta = |name, says, vab, f: fn(&mut Vec<u8>)| {
        let (mut g, mut slot) = base(vab);
        f(&mut slot);
        g.extend_from_slice(&slot);
        out.push(Case {
            name,
            input: g,
            says,
        });
    };
    meta("header-bad-magic", "header has a bad magic", false, |s| {
        s[0] ^= 1;
        fix(s)
    });
    meta(
        "header-version-11",
        "version 11.0 is not supported",
        false,
        |s| {
            s[4] = 11;
            fix(s)
        },
    );
    meta(
        "header-version-10-3",
        "version 10.3 is not supported",
        false,
        |s| {
            s[6] = 3;
            fix(s)
        },
    );
    meta(
        "header-size-256-for-10-0",
        "header size is 256",
        false,
        |s| {
            put32(s, 8, 256);
            fix(s)
        },
    );
    meta(
        "header-size-128-for-10-2",
        "header size is 128",
        true,
        |s| {
            put32(s, 8, 128);
            fix(s)
        },
    );
    meta("header-bad-checksum", "header checksum", false, |s| {
        s[20] ^= 1
    });
    meta("header-reserved-not-zero", "reserved bytes", true, |s| {
        s[200] = 1;
        fix(s)
    });
    meta("header-truncated", "shorter than a header", false, |s| {
        s.truncate(100)
    });
    meta("tables-bad-checksum", "tables checksum", false, |s| {
        let at = entry(s, 0, 0) + 40;
        s[at] ^= 1;
    });
    meta("tables-past-buffer", "end past the", false, |s| {
        let len = s.len();
        s.truncate(len - 10);
    });
    meta("tables-size-over-slot", "do not fit", false, |s| {
        put32(s, 44, 70000);
        fix_header(s)
    });
    meta(
        "partition-entry-size",
        "partition entries are 48 bytes",
        false,
        |s| {
            put32(s, 80 + 8, 48);
            fix(s)
        },
    );
    meta(
        "block-device-entry-size",
        "block device entries are 60 bytes",
        false,
        |s| {
            put32(s, 116 + 8, 60);
            fix(s)
        },
    );
    meta("extent-count-overflow", "extent table", false, |s| {
        put32(s, 92 + 4, u32::MAX);
        fix(s)
    });
    meta("group-offset-past-tables", "group table", false, |s| {
        put32(s, 104, u32::MAX - 10);
        fix(s)
    });
    meta(
        "tables-not-contiguous",
        "not right after the previous one",
        false,
        |s| {
            // Groups moved up by one entry size into the extents: sizes all fit, layout does not.
            let off = u32_at(s, 104);
            put32(s, 104, off - 24);
            fix(s)
        },
    );
    meta("name-not-terminated", "not NUL-terminated", false, |s| {
        let at = entry(s, 0, 0);
        s[at..at + 36].fill(b'a');
        fix(s)
    });
    meta("name-bad-character", "has the character 0x2f", false, |s| {
        let at = entry(s, 0, 0);
        s[at + 3] = b'/';
        fix(s)
    });
    meta("name-empty", "name is empty", false, |s| {
        let at = entry(s, 2, 1);
        s[at..at + 36].fill(0);
        fix(s)
    });
    meta(
        "name-garbage-after-nul",
        "bytes after its terminator",
        false,
        |s| {
            let at = entry(s, 3, 0);
            s[at + 24 + 30] = b'x';
            fix(s)
        },
    );
    meta("partition-duplicate-name", "listed twice", false, |s| {
        let (a, b) = (entry(s, 0, 0), entry(s, 0, 1));
        let name = s[a..a + 36].to_vec();
        s[b..b + 36].copy_from_slice(&name);
        fix(s)
    });
    meta(
        "partition-unknown-attribute",
        "attributes 0x11",
        false,
        |s| {
            let at = entry(s, 0, 0) + 36;
            put32(s, at, 0x11);
            fix(s)
        },
    );
    meta(
        "partition-updated-in-10-0",
        "unknown to version 10.0",
        false,
        |s| {
            let at = entry(s, 0, 0) + 36;
            put32(s, at, ATTR_READONLY | ATTR_UPDATED);
            fix(s)
        },
    );
    meta(
        "partition-group-out-of-range",
        "is in group 7 of 3",
        false,
        |s| {
            let at = entry(s, 0, 1) + 48;
            put32(s, at, 7);
            fix(s)
        },
    );
    meta(
        "partition-extent-range-overflow",
        "starts at extent",
        false,
        |s| {
            let at = entry(s, 0, 1);
            put32(s, at + 40, u32::MAX);
            fix(s)
        },
    );
    meta(
        "partition-extents-past-table",
        "extents past the 2",
        false,
        |s| {
            let at = entry(s, 0, 1);
            put32(s, at + 44, 5);
            fix(s)
        },
    );
    meta(
        "extent-unknown-target",
        "unknown target type 2",
        false,
        |s| {
            let at = entry(s, 1, 0) + 8;
            put32(s, at, 2);
            fix(s)
        },
    );
    meta(
        "extent-zero-with-target",
        "zero extent has a target",
        false,
        |s| {
            let at = entry(s, 1, 0) + 8;
            put32(s, at, 1);
            fix(s)
        },
    );
    meta("extent-no-sectors", "extent has no sectors", false, |s| {
        let at = entry(s, 1, 1);
        put64(s, at, 0);
        fix(s)
    });
    meta(
        "extent-past-device",
        "outside the logical area",
        false,
        |s| {
            let at = entry(s, 1, 1) + 12;
            put64(s, at, 64 * MIB / 512 - 8);
            fix(s)
        },
    );
    meta(
        "extent-sector-overflow",
        "outside the logical area",
        false,
        |s| {
            let at = entry(s, 1, 1) + 12;
            put64(s, at, u64::MAX - 4);
            fix(s)
        },
    );
    meta(
        "extent-in-metadata-region",
        "outside the logical area",
        false,
        |s| {
            let at = entry(s, 1, 0) + 12;
            put64(s, at, 16);
            fix(s)
        },
    );
    meta("extent-overlap", "overlap", false, |s| {
        // vendor_a's extent moved onto system_a's.
        let (a, b) = (entry(s, 1, 0) + 12, entry(s, 1, 1) + 12);
        let start = u64::from_le_bytes(s[a..a + 8].try_into().unwrap());
        put64(s, b, start + 8);
        fix(s)
    });
    meta(
        "extent-bad-block-device",
        "block device 3 of 1",
        false,
        |s| {
            let at = entry(s, 1, 0) + 20;
            put32(s, at, 3);
            fix(s)
        },
    );
    meta("extent-unowned", "belong to no partition", false, |s| {
        // vendor_a gives up its extent, system_b (no extents) starts right after system_a's.
        let (a, b) = (entry(s, 0, 1) + 44, entry(s, 0, 2) + 40);
        put32(s, a, 0);
        put32(s, b, 1);
        fix(s)
    });
    meta(
        "partition-zero-extents-overflow",
        "larger than 2^64",
        false,
        |s| {
            let at = entry(s, 1, 1);
            put64(s, at, u64::MAX / 256);
            put32(s, at + 8, 1);
            put64(s, at + 12, 0);
            fix(s)
        },
    );
    meta("group-over-maximum", "more than its maximum", false, |s| {
        let at = entry(s, 2, 1) + 40;
        put64(s, at, 4 * MIB);
        fix(s)
    });
    meta("group-unknown-flags", "unknown flags 0x4", false, |s| {
        let at = entry(s, 2, 1) + 36;
        put32(s, at, 4);
        fix(s)
    });
    meta("block-device-not-super", "not \"super\"", false, |s| {
        let at = entry(s, 3, 0) + 24;
        s[at..at + 5].copy_from_slice(b"sup_r");
        fix(s)
    });
    meta("no-block-devices", "no block devices", false, |s| {
        // Extents point at device 0, but the table is checked first.
        put32(s, 116 + 4, 0);
        let ts = u32_at(s, 44);
        put32(s, 44, ts - 64);
        fix(s)
    });
    meta("first-sector-in-metadata", "overlap the", false, |s| {
        let at = entry(s, 3, 0);
        put64(s, at, 100);
        fix(s)
    });
    meta("first-sector-past-device", "not inside its", false, |s| {
        let at = entry(s, 3, 0);
        put64(s, at, u64::MAX / 256);
        fix(s)
    });
    out
}

#[test]
fn every_hostile_case_is_slot_error_34() {
    let all = cases();
    assert!(all.len() >= 20);
    for c in &all {
        let err = check::run(&c.input).expect_err(c.name);
        let e = abupdate::Error::from(err.clone());
        assert_eq!(e.code, ErrorCode::SlotError, "{}: {err}", c.name);
        assert_eq!(e.code.as_i32(), 34);
        assert!(
            err.message.contains(c.says),
            "{}: {:?} lacks {:?}",
            c.name,
            err.message,
            c.says
        );
    }
}

#[test]
fn valid_bases_pass_the_fuzz_checks() {
    for vab in [false, true] {
        let (mut g, slot) = base(vab);
        g.extend_from_slice(&slot);
        let m = check::run(&g).unwrap();
        assert_eq!(m.partitions().len(), 3);
        // Trailing bytes past the tables (a slot's padding) are fine.
        g.extend_from_slice(&[0u8; 1000]);
        check::run(&g).unwrap();
    }
}

#[test]
fn backup_geometry_is_used_when_primary_is_bad() {
    let (g, _) = base(false);
    let mut bad = g.clone();
    bad[0] = 0;
    let good = Geometry::parse(&g).unwrap();
    assert_eq!(Geometry::parse_either(&bad, &g), Ok(good));
    let err = Geometry::parse_either(&bad, &bad).unwrap_err();
    assert_eq!(abupdate::Error::from(err).code, ErrorCode::SlotError);
    assert!(good.primary_offset(3).is_err());
}

#[test]
fn backup_metadata_copy_is_used_when_primary_is_bad() {
    let (g, m) = NewSuper::new(64 * MIB, 65536, 3)
        .partition("system", ATTR_READONLY, MIB, None)
        .build()
        .unwrap();
    let mut region = flash_image(&g, &m).unwrap();
    let primary = g.primary_offset(1).unwrap() as usize;
    region[primary + 20] ^= 1;
    assert_eq!(read_slot(&region, &g, 1), Ok(m.clone()));
    assert_eq!(read_slot(&region, &g, 0), Ok(m.clone()));
    let backup = g.backup_offset(1).unwrap() as usize;
    region[backup] ^= 1;
    let err = read_slot(&region, &g, 1).unwrap_err();
    assert!(err.message.contains("header checksum"), "{err}");
    assert_eq!(abupdate::Error::from(err).code, ErrorCode::SlotError);
    // A truncated region and a slot that does not exist.
    assert!(read_slot(&region[..primary], &g, 2).is_err());
    assert!(read_slot(&region, &g, 3).is_err());
}

/// Random damage with the checksums fixed afterwards, so it reaches the checks past them:
/// never a panic, and what is accepted passes the fuzz target's round-trip checks.
#[test]
fn mutations_with_fixed_checksums_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..4000 {
        let (mut g, mut slot) = base(round % 2 == 1);
        for _ in 0..1 + next() % 4 {
            let at = (next() % slot.len() as u64) as usize;
            match next() % 3 {
                0 => slot[at] ^= 1 << (next() % 8),
                1 => slot[at] = next() as u8,
                _ => slot[at] = slot[at].wrapping_add(1),
            }
        }
        if next() % 8 != 0 {
            fix(&mut slot);
        }
        g.extend_from_slice(&slot);
        match check::run(&g) {
            Ok(_) => accepted += 1,
            Err(e) => {
                assert_eq!(abupdate::Error::from(e).code, ErrorCode::SlotError);
                refused += 1;
            }
        }
    }
    assert!(
        refused > 1000 && accepted > 10,
        "accepted {accepted}, refused {refused}"
    );
}

fn seeds_dir() -> PathBuf {
    common::fuzz_seeds::seeds_dir("lp_parse")
}

fn expected_path() -> PathBuf {
    common::fuzz_seeds::expected_path("lp_parse")
}

fn outcome(data: &[u8]) -> String {
    match check::run(data) {
        Ok(m) => format!("ok:{}:{}", m.partitions().len(), m.groups().len()),
        Err(e) => format!("err:{}", abupdate::Error::from(e).code.as_i32()),
    }
}

#[test]
fn seeds_replay() {
    common::fuzz_seeds::replay("lp_parse", 20, outcome);
}

#[test]
#[ignore = "rewrites fuzz/seeds/lp_parse; run by hand"]
fn regenerate_seeds() {
    let dir = seeds_dir();
    // Crash reproducers are kept as they are.
    let mut list = common::fuzz_seeds::clear_generated("lp_parse", |_| true);
    let mut put = |name: &str, data: &[u8]| {
        list.push_str(&format!("{name} {}\n", outcome(data)));
        std::fs::write(dir.join(name), data).unwrap();
    };
    for vab in [false, true] {
        let (mut g, slot) = base(vab);
        g.extend_from_slice(&slot);
        put(if vab { "valid-vab.bin" } else { "valid.bin" }, &g);
    }
    for c in cases() {
        put(&format!("{}.bin", c.name), &c.input);
    }
    std::fs::write(expected_path(), list).unwrap();
}
