//! Reed-Solomon forward error correction over the data and hash tree, as libfec, avbtool,
//! update_engine and `veritysetup` compute it: RS(255, 255 - roots) over GF(2^8), codeword `c`
//! taking symbol `j` from input offset `c + j * rounds * 4096` (zero past the end), parity of
//! codeword `c` stored at `c * roots`.
//!
//! Read in order, the input visits every codeword once per `rounds * 4096`-byte stripe, each
//! time with its next symbol. So the encoder keeps the running remainder of every codeword —
//! exactly as many bytes as the FEC area — and consumes the input once, in order, in chunks of
//! any size. Each symbol is one step of a systematic encoder's shift register per codeword
//! (see `fec_kernels`), spread over threads for large chunks.

use super::fec_kernels::{new_codewords, Codewords};
use super::geometry::FecGeometry;
use super::{default_threads, gf256};
use crate::error::Result;

/// The number of parity symbols per codeword: 2..=24, as the kernel's dm-verity FEC accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FecRoots(u8);

impl FecRoots {
    /// What avbtool and update_engine use unless told otherwise.
    pub const DEFAULT: FecRoots = FecRoots(2);

    /// `roots` parity bytes per codeword; `Verity` (42) outside 2..=24.
    pub fn new(roots: u32) -> Result<Self> {
        match u8::try_from(roots) {
            Ok(r @ 2..=24) => Ok(FecRoots(r)),
            _ => crate::bail!(Verity, "FEC roots {roots} outside 2..=24"),
        }
    }

    /// The number of roots.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl Default for FecRoots {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Computes the FEC area for `input_size` bytes fed in order, in chunks of any size.
///
/// Memory: the FEC area itself (`fec_size(input_size, roots)` bytes, rounded up to 2, 4, 8, 16
/// or 24 bytes per codeword while encoding).
pub struct FecEncoder {
    geometry: FecGeometry,
    input_size: u64,
    /// `rounds * 4096`: the number of codewords.
    stripe: usize,
    /// Input bytes consumed so far.
    pos: u64,
    codewords: Box<dyn Codewords>,
    threads: usize,
}

impl FecEncoder {
    /// An encoder for `input_size` bytes of input (data and hash tree).
    pub fn new(input_size: u64, roots: FecRoots) -> Result<Self> {
        if input_size == 0 {
            crate::bail!(Verity, "FEC input is empty");
        }
        let geometry = FecGeometry::new(input_size, roots);
        let too_big = || {
            crate::err!(
                Verity,
                "FEC area for {input_size} bytes does not fit in memory"
            )
        };
        let stripe = usize::try_from(geometry.stripe()).map_err(|_| too_big())?;
        usize::try_from(geometry.size()).map_err(|_| too_big())?;
        let codewords = new_codewords(&gf256::generator(geometry.roots), stripe);
        Ok(FecEncoder {
            geometry,
            input_size,
            stripe,
            pos: 0,
            codewords,
            threads: default_threads(),
        })
    }

    /// Caps the threads used to encode large chunks (default: the available cores, at most 4).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// Feeds the next bytes of input.
    pub fn update(&mut self, data: &[u8]) -> Result<()> {
        if data.len() as u64 > self.input_size - self.pos {
            crate::bail!(
                Verity,
                "FEC input exceeds the declared {} bytes",
                self.input_size
            );
        }
        self.absorb(data);
        Ok(())
    }

    /// Returns the FEC area. Fails with `Verity` unless exactly `input_size` bytes were fed.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        if self.pos != self.input_size {
            crate::bail!(
                Verity,
                "FEC got {} of {} bytes of input",
                self.pos,
                self.input_size
            );
        }
        // Codewords past the end of the input are padded with zero symbols.
        let total = self.geometry.data_symbols as u64 * self.stripe as u64;
        let zeros = vec![0u8; self.stripe.min(1 << 20)];
        while self.pos < total {
            let n = (total - self.pos).min(zeros.len() as u64) as usize;
            self.absorb(&zeros[..n]);
        }
        Ok(self.codewords.parity(self.geometry.roots))
    }

    fn absorb(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let first = (self.pos % self.stripe as u64) as usize;
            let n = (self.stripe - first).min(data.len());
            self.codewords.absorb(first, &data[..n], self.threads);
            self.pos += n as u64;
            data = &data[n..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    /// A textbook systematic encoder for one codeword: the remainder of m(x)·x^roots divided
    /// by g(x), by long division, highest degree first.
    fn parity_by_division(message: &[u8], roots: usize) -> Vec<u8> {
        let g = gf256::generator(roots);
        let mut work: Vec<u8> = message
            .iter()
            .copied()
            .chain(std::iter::repeat(0).take(roots))
            .collect();
        for i in 0..message.len() {
            let coef = work[i];
            for k in 0..=roots {
                // work is highest degree first; g is ascending.
                work[i + k] ^= gf256::mul(coef, g[roots - k]);
            }
        }
        work[message.len()..].to_vec()
    }

    fn input(len: usize) -> Vec<u8> {
        let mut x = 0x9e3779b97f4a7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    fn encode(data: &[u8], roots: u32, chunk: usize, threads: usize) -> Vec<u8> {
        let mut enc = FecEncoder::new(data.len() as u64, FecRoots::new(roots).unwrap())
            .unwrap()
            .threads(threads);
        data.chunks(chunk).for_each(|c| enc.update(c).unwrap());
        enc.finish().unwrap()
    }

    #[test]
    fn every_register_width_matches_long_division() {
        // 600 blocks: 3 rounds at 2 roots, 3 at 24; the last stripe is partly zero padding.
        let data = input(600 * 4096 + 100);
        for roots in [2u32, 3, 4, 5, 8, 9, 16, 17, 24] {
            let fec = encode(&data, roots, 1 << 20, 1);
            let g = FecGeometry::new(data.len() as u64, FecRoots::new(roots).unwrap());
            let stripe = g.stripe() as usize;
            assert_eq!(fec.len(), g.size() as usize);
            for c in [0, 1, 4095, 4096, stripe / 2, stripe - 1] {
                let message: Vec<u8> = (0..g.data_symbols)
                    .map(|j| data.get(c + j * stripe).copied().unwrap_or(0))
                    .collect();
                let r = roots as usize;
                assert_eq!(
                    fec[c * r..c * r + r],
                    parity_by_division(&message, r),
                    "roots {roots} codeword {c}"
                );
            }
        }
    }

    #[test]
    fn chunking_and_threads_do_not_change_the_parity() {
        let data = input(70 * 4096 * 5);
        let reference = encode(&data, 2, data.len(), 1);
        for (chunk, threads) in [(1, 1), (4095, 2), (300_001, 2), (data.len(), 3)] {
            assert_eq!(
                encode(&data, 2, chunk, threads),
                reference,
                "chunk {chunk} threads {threads}"
            );
        }
    }

    #[test]
    fn roots_and_sizes_are_checked() {
        for bad in [0, 1, 25, 255, 256 + 2] {
            assert_eq!(
                FecRoots::new(bad).err().map(|e| e.code),
                Some(ErrorCode::Verity),
                "{bad}"
            );
        }
        assert!(FecEncoder::new(0, FecRoots::DEFAULT).is_err());
        let mut enc = FecEncoder::new(10, FecRoots::DEFAULT).unwrap();
        enc.update(&[1; 6]).unwrap();
        assert!(enc.update(&[1; 5]).is_err());
        assert_eq!(enc.finish().err().map(|e| e.code), Some(ErrorCode::Verity));
    }
}
