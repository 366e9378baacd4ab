//! A bounds-checked big-endian cursor over untrusted vbmeta bytes. Every read either returns the
//! bytes asked for or a 28 (`AvbSignature`) error naming what was being read: hostile sizes and
//! offsets never index out of bounds.

use crate::error::Result;

pub(crate) struct BeReader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> BeReader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        BeReader { bytes, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8]> {
        if len > self.bytes.len() {
            crate::bail!(
                AvbSignature,
                "{}: needs {len} more bytes, only {} left",
                self.what,
                self.bytes.len()
            );
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        Ok(head)
    }

    /// Takes a length read from the input itself, which may not even fit `usize`.
    pub(crate) fn take_u64_len(&mut self, len: u64) -> Result<&'a [u8]> {
        let len = usize::try_from(len)
            .map_err(|_| crate::err!(AvbSignature, "{}: length {len} is too large", self.what))?;
        self.take(len)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// `bytes[offset..offset + size]` for an offset and size read from a header, or a 28 error when
/// the range overflows or leaves `bytes` (`what` names the range, `within` the block).
pub(crate) fn sub_range<'a>(
    bytes: &'a [u8],
    offset: u64,
    size: u64,
    what: &str,
    within: &str,
) -> Result<&'a [u8]> {
    let end = offset.checked_add(size).ok_or_else(|| {
        crate::err!(
            AvbSignature,
            "{what}: offset {offset} + size {size} overflows"
        )
    })?;
    if end > bytes.len() as u64 {
        crate::bail!(
            AvbSignature,
            "{what}: bytes {offset}..{end} are not inside the {within} ({} bytes)",
            bytes.len()
        );
    }
    // Both fit in usize now: end <= bytes.len().
    Ok(&bytes[offset as usize..end as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn reads_big_endian_and_refuses_overruns() {
        let data = [0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 3, 9];
        let mut r = BeReader::new(&data, "test");
        assert_eq!(r.u32().unwrap(), 0x102);
        assert_eq!(r.u64().unwrap(), 3);
        assert_eq!(r.remaining(), 1);
        assert_eq!(r.u32().unwrap_err().code, ErrorCode::AvbSignature);
        assert_eq!(
            r.take_u64_len(u64::MAX).unwrap_err().code,
            ErrorCode::AvbSignature
        );
        assert_eq!(r.take(1).unwrap(), &[9]);
    }

    #[test]
    fn sub_range_checks_overflow_and_bounds() {
        let data = [1u8, 2, 3, 4];
        assert_eq!(sub_range(&data, 1, 3, "x", "block").unwrap(), &[2, 3, 4]);
        assert_eq!(sub_range(&data, 4, 0, "x", "block").unwrap(), &[] as &[u8]);
        assert!(sub_range(&data, 2, 3, "x", "block").is_err());
        assert!(sub_range(&data, u64::MAX, 2, "x", "block").is_err());
        assert!(sub_range(&data, 5, 0, "x", "block").is_err());
    }
}
