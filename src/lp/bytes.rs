//! Little-endian field access and the SHA-256 the format's checksums use.

/// The `u16` at `at`. Callers check the buffer's length first; a read past the end gives 0
/// rather than a panic.
pub(crate) fn u16_le(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = at.checked_add(2).and_then(|end| b.get(at..end)) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

/// The `u32` at `at` (same contract as [`u16_le`]).
pub(crate) fn u32_le(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = at.checked_add(4).and_then(|end| b.get(at..end)) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

/// The `u64` at `at` (same contract as [`u16_le`]).
pub(crate) fn u64_le(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = at.checked_add(8).and_then(|end| b.get(at..end)) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, data).as_ref());
    out
}

/// SHA-256 of `data` with the 32 bytes at `at` taken as zero, as liblp computes the geometry
/// and header checksums.
pub(crate) fn sha256_zeroed(data: &[u8], at: usize) -> [u8; 32] {
    let mut copy = data.to_vec();
    if let Some(field) = at.checked_add(32).and_then(|end| copy.get_mut(at..end)) {
        field.fill(0);
    }
    sha256(&copy)
}
