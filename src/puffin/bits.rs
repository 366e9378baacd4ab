//! Bit I/O in deflate's order: least significant bit of each byte first.

use crate::error::Result;
use crate::{bail, err};

/// Reads bits from a byte slice. Past the end it reads zeros when peeking, so a decoder may
/// look ahead by a full code length; consuming past the end is an error.
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: u64,
    /// Length in bits.
    end: u64,
}

impl<'a> BitReader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        let end = (data.len() as u64).saturating_mul(8);
        BitReader { data, pos: 0, end }
    }

    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn remaining(&self) -> u64 {
        self.end - self.pos
    }

    /// The next `n` (at most 32) bits, zeros past the end, without consuming them.
    pub fn peek(&self, n: u32) -> u32 {
        debug_assert!(n <= 32);
        let byte = (self.pos / 8) as usize;
        let shift = (self.pos % 8) as u32;
        let mut word = [0u8; 8];
        let avail = self.data.len().saturating_sub(byte).min(8);
        if avail > 0 {
            word[..avail].copy_from_slice(&self.data[byte..byte + avail]);
        }
        let v = u64::from_le_bytes(word) >> shift;
        if n == 32 {
            v as u32
        } else {
            (v as u32) & ((1u32 << n) - 1)
        }
    }

    /// Consumes `n` bits; fails if fewer remain.
    pub fn skip(&mut self, n: u32) -> Result<()> {
        if u64::from(n) > self.remaining() {
            bail!(MalformedPayload, "deflate stream ends inside a code");
        }
        self.pos += u64::from(n);
        Ok(())
    }

    /// Reads `n` (at most 32) bits.
    pub fn read(&mut self, n: u32) -> Result<u32> {
        let v = self.peek(n);
        self.skip(n)?;
        Ok(v)
    }

    /// Bits from here to the next byte boundary.
    pub fn to_boundary(&self) -> u32 {
        ((8 - self.pos % 8) % 8) as u32
    }

    /// Takes `len` whole bytes; the reader must be at a byte boundary.
    pub fn bytes(&mut self, len: usize) -> Result<&'a [u8]> {
        debug_assert!(self.pos % 8 == 0);
        let start = (self.pos / 8) as usize;
        let slice = start
            .checked_add(len)
            .and_then(|end| self.data.get(start..end))
            .ok_or_else(|| err!(MalformedPayload, "stored deflate block runs past the data"))?;
        self.pos += (len as u64) * 8;
        Ok(slice)
    }
}

/// Writes bits into a growing byte vector, never more than `limit` bytes.
pub(super) struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u64,
    bits: u32,
    limit: usize,
}

impl<'a> BitWriter<'a> {
    /// Appends to `out`; the result may grow `out` to at most `limit` bytes.
    pub fn new(out: &'a mut Vec<u8>, limit: usize) -> Self {
        BitWriter {
            out,
            acc: 0,
            bits: 0,
            limit,
        }
    }

    /// Writes the low `n` (at most 32) bits of `v`.
    pub fn write(&mut self, n: u32, v: u32) -> Result<()> {
        debug_assert!(n <= 32);
        let v = if n == 32 { v } else { v & ((1u32 << n) - 1) };
        self.acc |= u64::from(v) << self.bits;
        self.bits += n;
        while self.bits >= 8 {
            self.push(self.acc as u8)?;
            self.acc >>= 8;
            self.bits -= 8;
        }
        Ok(())
    }

    fn push(&mut self, byte: u8) -> Result<()> {
        if self.out.len() >= self.limit {
            bail!(MalformedPayload, "deflate stream longer than its extent");
        }
        self.out.push(byte);
        Ok(())
    }

    /// Bits to write to reach the next byte boundary.
    pub fn to_boundary(&self) -> u32 {
        (8 - self.bits % 8) % 8
    }

    /// Pads with zeros to a byte boundary and writes out everything.
    pub fn flush(&mut self) -> Result<()> {
        self.write(self.to_boundary(), 0)
    }

    /// Writes whole bytes; the writer must be at a byte boundary.
    pub fn bytes(&mut self, data: &[u8]) -> Result<()> {
        debug_assert!(self.bits == 0);
        if self.limit - self.out.len() < data.len() {
            bail!(MalformedPayload, "deflate stream longer than its extent");
        }
        self.out.extend_from_slice(data);
        Ok(())
    }
}
