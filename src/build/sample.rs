//! Synthetic partition images for the demo and the VM test: deterministic content with the mix
//! real images have (zeros, compressible text, incompressible data), and "next builds" of it
//! with some blocks rewritten, patched in place or zeroed, so deltas use every operation kind.

const BLOCK: usize = 4096;

/// A deterministic generator (xorshift64); a seed of 0 is replaced, since it would stay 0.
pub struct SampleRng(u64);

impl SampleRng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        SampleRng(if seed == 0 { 0x5eed } else { seed })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `blocks` blocks of content: a quarter zeros, a quarter random, half text-like.
pub fn image(rng: &mut SampleRng, blocks: usize) -> Vec<u8> {
    let mut data = vec![0u8; blocks * BLOCK];
    for block in data.chunks_mut(BLOCK) {
        match rng.next_u64() % 4 {
            0 => {}
            1 => block.iter_mut().for_each(|b| *b = rng.next_u64() as u8),
            _ => {
                let word = rng.next_u64().to_le_bytes();
                for (i, b) in block.iter_mut().enumerate() {
                    *b = if i % 13 == 0 {
                        b'\n'
                    } else {
                        b'a' + word[i % 8] % 26
                    };
                }
            }
        }
    }
    data
}

/// The next build of `old`: one block in sixteen rewritten, patched in place or zeroed.
pub fn evolve(old: &[u8], rng: &mut SampleRng) -> Vec<u8> {
    let mut new = old.to_vec();
    let blocks = new.len() / BLOCK;
    for _ in 0..blocks / 16 {
        let b = (rng.next_u64() as usize) % blocks;
        let block = &mut new[b * BLOCK..(b + 1) * BLOCK];
        match rng.next_u64() % 3 {
            0 => block.iter_mut().for_each(|x| *x = rng.next_u64() as u8),
            1 => block[(rng.next_u64() % 4000) as usize] ^= 0x5a,
            _ => block.fill(0),
        }
    }
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_mixed_and_evolving() {
        let a = image(&mut SampleRng::new(7), 64);
        assert_eq!(a, image(&mut SampleRng::new(7), 64));
        let zero_blocks = a
            .chunks(BLOCK)
            .filter(|b| b.iter().all(|&x| x == 0))
            .count();
        assert!(
            (4..40).contains(&zero_blocks),
            "{zero_blocks} zero blocks of 64"
        );
        let b = evolve(&a, &mut SampleRng::new(8));
        let changed = a
            .chunks(BLOCK)
            .zip(b.chunks(BLOCK))
            .filter(|(x, y)| x != y)
            .count();
        assert!((1..=4).contains(&changed), "{changed} blocks changed");
    }
}
