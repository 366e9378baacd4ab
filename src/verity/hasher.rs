//! `H(salt || block)` with the salt absorbed once.

#[cfg(not(soong))]
use sha1::Digest as _;

use super::HashAlgorithm;

/// Below this many blocks a batch is hashed on the calling thread: spawning costs more than
/// it saves.
const PARALLEL_MIN_BLOCKS: usize = 64;

/// A hash state that has absorbed the salt; cloned for every block, which is cheaper than
/// hashing the salt again.
#[derive(Clone)]
pub(super) enum SaltedHasher {
    Ring(ring::digest::Context),
    /// ring's SHA-1 is portable Rust; the `sha1` crate uses the CPU's SHA instructions
    /// (several times faster), and SHA-1 is avbtool's default hash tree algorithm. AOSP has no
    /// `sha1` crate: Soong builds take ring's.
    #[cfg(not(soong))]
    Sha1(sha1::Sha1),
}

impl SaltedHasher {
    pub fn new(alg: HashAlgorithm, salt: &[u8]) -> Self {
        match alg {
            #[cfg(not(soong))]
            HashAlgorithm::Sha1 => SaltedHasher::Sha1(sha1::Sha1::new_with_prefix(salt)),
            _ => {
                let mut ctx = ring::digest::Context::new(alg.ring());
                ctx.update(salt);
                SaltedHasher::Ring(ctx)
            }
        }
    }

    /// Writes `H(salt || block)` to the start of `out` and zeros the rest of it.
    pub fn digest_into(&self, block: &[u8], out: &mut [u8]) {
        let len = match self {
            SaltedHasher::Ring(salted) => {
                let mut ctx = salted.clone();
                ctx.update(block);
                let digest = ctx.finish();
                out[..digest.as_ref().len()].copy_from_slice(digest.as_ref());
                digest.as_ref().len()
            }
            #[cfg(not(soong))]
            SaltedHasher::Sha1(salted) => {
                let mut ctx = salted.clone();
                ctx.update(block);
                out[..20].copy_from_slice(&ctx.finalize());
                20
            }
        };
        out[len..].fill(0);
    }
}

/// Writes the digest of each `block_size` block of `data` into consecutive `slot`-byte slots
/// of `out`, spreading large batches over `threads` threads.
pub(super) fn hash_blocks(
    salted: &SaltedHasher,
    data: &[u8],
    block_size: usize,
    slot: usize,
    out: &mut [u8],
    threads: usize,
) {
    let blocks = data.len() / block_size;
    if threads <= 1 || blocks < PARALLEL_MIN_BLOCKS {
        return hash_blocks_here(salted, data, block_size, slot, out);
    }
    let per_thread = blocks.div_ceil(threads);
    std::thread::scope(|scope| {
        let mut work = data
            .chunks(per_thread * block_size)
            .zip(out.chunks_mut(per_thread * slot));
        let mine = work.next();
        for (data, out) in work {
            scope.spawn(move || hash_blocks_here(salted, data, block_size, slot, out));
        }
        if let Some((data, out)) = mine {
            hash_blocks_here(salted, data, block_size, slot, out);
        }
    });
}

fn hash_blocks_here(
    salted: &SaltedHasher,
    data: &[u8],
    block_size: usize,
    slot: usize,
    out: &mut [u8],
) {
    for (block, out) in data
        .chunks_exact(block_size)
        .zip(out.chunks_exact_mut(slot))
    {
        salted.digest_into(block, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_agrees_with_ring() {
        let block = [0xa5u8; 4096];
        let mut ours = [0xffu8; 32];
        SaltedHasher::new(HashAlgorithm::Sha1, b"salt").digest_into(&block, &mut ours);
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(b"salt");
        ctx.update(&block);
        assert_eq!(&ours[..20], ctx.finish().as_ref());
        assert_eq!(ours[20..], [0; 12]);
    }
}
