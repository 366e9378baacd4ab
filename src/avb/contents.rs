//! What a partition's contents must be for its hash and hashtree descriptors: the checks
//! `avb_slot_verify` makes at boot (hash descriptors) and the ones dm-verity makes on every read
//! (hashtree descriptors), made once over the whole partition before a slot is switched to.
//!
//! Sans-I/O like the rest of `avb`: the partition is read through a `read_at(offset, buf)`
//! callback that fills `buf` exactly, and its errors pass through.
//!
//! Error codes: a descriptor libavb or dm-verity would reject whatever the contents are (an
//! unknown algorithm, a digest of the wrong length, a tree that does not fit its geometry) is 28
//! (`AvbSignature`, libavb's `ERROR_INVALID_METADATA`); a partition smaller than what its
//! descriptor covers, or contents that do not match, is 43 (`AvbContents`).

use super::descriptor::{HashDescriptor, HashtreeDescriptor};
use crate::error::Result;
use crate::verity::{self, HashAlgorithm, HashTreeBuilder};

/// Bytes read and hashed at a time: large enough for the tree builder to hash on several
/// threads, small enough to stay a bounded buffer on a device.
const CHUNK: usize = 4 << 20;

/// libavb's `AVB_PART_NAME_MAX_SIZE`: a partition name with its slot suffix and the NUL must
/// fit 32 bytes, so a name without suffix has at most 32 - 1 - 2 bytes.
pub const PARTITION_NAME_MAX: usize = 29;

/// Refuses (28) a partition name from a descriptor unless it is 1..=29 bytes of `[a-z0-9_]`.
///
/// libavb only requires UTF-8 that fits its buffer; the partition names Android uses are all
/// lower-case ASCII, and a name is joined into a device path (`/dev/block/by-name/<name>_b`,
/// `<dir>/<name>_b.img`), so anything else (`..`, `/`, upper case, NUL) is refused before any
/// path is built from it.
pub fn validate_partition_name(name: &str) -> Result<()> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    if name.is_empty() || name.len() > PARTITION_NAME_MAX || !name.bytes().all(allowed) {
        crate::bail!(
            AvbSignature,
            "partition name {name:?} is not 1 to {PARTITION_NAME_MAX} characters of [a-z0-9_]"
        );
    }
    Ok(())
}

impl HashDescriptor {
    /// Checks `H(salt || first image_size bytes)` against the descriptor's digest, as
    /// `avb_slot_verify` does for `boot`, `init_boot`, `vendor_boot`, `dtbo`... Only `sha256`
    /// and `sha512` exist for hash descriptors (libavb compares the names exactly). A
    /// persistent digest (empty in the descriptor) is not stored in the image: 28, since
    /// libavb accepts those only for partitions without A/B suffix, which the caller skips.
    pub fn check_contents(
        &self,
        partition_size: u64,
        mut read_at: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let name = &self.partition_name;
        let algorithm = match self.hash_algorithm.as_str() {
            "sha256" => &ring::digest::SHA256,
            "sha512" => &ring::digest::SHA512,
            other => crate::bail!(
                AvbSignature,
                "{name}: hash descriptor algorithm {other:?} is neither sha256 nor sha512"
            ),
        };
        if self.digest.len() != crate::crypto::digest_len(algorithm) {
            crate::bail!(
                AvbSignature,
                "{name}: hash descriptor digest is {} bytes, {} takes {}",
                self.digest.len(),
                self.hash_algorithm,
                crate::crypto::digest_len(algorithm)
            );
        }
        covers(name, "image", 0, self.image_size, partition_size)?;
        let mut ctx = ring::digest::Context::new(algorithm);
        ctx.update(&self.salt);
        for_each_chunk(0, self.image_size, &mut read_at, |chunk| {
            ctx.update(chunk);
            Ok(())
        })?;
        if ctx.finish().as_ref() != self.digest.as_slice() {
            crate::bail!(
                AvbContents,
                "{name}: the {} bytes the hash descriptor covers do not hash to its digest",
                self.image_size
            );
        }
        Ok(())
    }
}

impl HashtreeDescriptor {
    /// Rebuilds the dm-verity tree from the first `image_size` bytes with the descriptor's
    /// salt, algorithm and block size, and checks its root against the descriptor's root
    /// digest (what the kernel trusts) and the tree stored at `tree_offset` against it (what
    /// dm-verity reads: a stored block that differs fails every read it covers).
    ///
    /// Not checked: the FEC area (it only corrects errors; a correct tree needs none). Data and
    /// hash block sizes must be equal, as avbtool always writes them (32 otherwise).
    pub fn check_contents(
        &self,
        partition_size: u64,
        mut read_at: impl FnMut(u64, &mut [u8]) -> Result<()>,
    ) -> Result<()> {
        let name = &self.partition_name;
        let alg = HashAlgorithm::from_name(&self.hash_algorithm)
            .ok()
            .filter(|alg| alg.name() == self.hash_algorithm)
            .ok_or_else(|| {
                crate::err!(
                    AvbSignature,
                    "{name}: hashtree algorithm {:?} is not sha1, sha256 or sha512",
                    self.hash_algorithm
                )
            })?;
        if self.root_digest.len() != alg.digest_len() {
            crate::bail!(
                AvbSignature,
                "{name}: hashtree root digest is {} bytes, {alg} takes {}",
                self.root_digest.len(),
                alg.digest_len()
            );
        }
        if self.data_block_size != self.hash_block_size {
            crate::bail!(
                Unsupported,
                "{name}: hashtree data block size {} differs from hash block size {}",
                self.data_block_size,
                self.hash_block_size
            );
        }
        let block = self.data_block_size;
        let block_u64 = u64::from(block);
        let expected_tree = verity::hash_tree_size(self.image_size, block, alg)
            .map_err(|e| crate::err!(AvbSignature, "{name}: hashtree: {}", e.message))?;
        if self.image_size == 0
            || self.image_size % block_u64 != 0
            || self.tree_offset % block_u64 != 0
            || self.tree_size != expected_tree
        {
            crate::bail!(
                AvbSignature,
                "{name}: hashtree of {} bytes at {} for {} bytes of data in {block}-byte blocks: \
                 the data must be a positive multiple of the block size, the tree block-aligned \
                 and {expected_tree} bytes",
                self.tree_size,
                self.tree_offset,
                self.image_size
            );
        }
        covers(name, "data", 0, self.image_size, partition_size)?;
        covers(
            name,
            "hash tree",
            self.tree_offset,
            self.tree_size,
            partition_size,
        )?;

        let mut builder =
            HashTreeBuilder::with_block_size(alg, &self.salt, self.image_size, block)?;
        for_each_chunk(0, self.image_size, &mut read_at, |chunk| {
            builder.update(chunk)
        })?;
        let computed = builder.finish()?;
        if computed.root_digest != self.root_digest {
            crate::bail!(
                AvbContents,
                "{name}: the hash tree of its {} data bytes does not have the descriptor's root \
                 digest (the data differs from what was signed)",
                self.image_size
            );
        }
        let mut at = 0usize;
        for_each_chunk(self.tree_offset, self.tree_size, &mut read_at, |stored| {
            let end = at + stored.len();
            let ours = &computed.tree[at..end];
            if let Some(i) = stored.iter().zip(ours).position(|(a, b)| a != b) {
                let byte = at + i;
                crate::bail!(
                    AvbContents,
                    "{name}: stored hash tree block {} (tree byte {byte}, partition offset {}) \
                     differs from the tree of the data: dm-verity would fail reads under it",
                    byte / block as usize,
                    self.tree_offset + byte as u64
                );
            }
            at = end;
            Ok(())
        })
    }
}

/// 43 unless `offset + len` lies within the partition.
fn covers(name: &str, what: &str, offset: u64, len: u64, partition_size: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(end) if end <= partition_size => Ok(()),
        _ => crate::bail!(
            AvbContents,
            "{name}: its descriptor covers {len} bytes of {what} at {offset}, the partition has \
             only {partition_size}"
        ),
    }
}

/// Reads `len` bytes from `offset` in chunks of at most [`CHUNK`] and hands each to `f`.
fn for_each_chunk(
    offset: u64,
    len: u64,
    read_at: &mut impl FnMut(u64, &mut [u8]) -> Result<()>,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut done = 0u64;
    while done < len {
        // At most CHUNK, so it fits usize.
        let n = (len - done).min(CHUNK as u64) as usize;
        let chunk = &mut buf[..n];
        read_at(offset + done, chunk)?;
        f(chunk)?;
        done += n as u64;
    }
    Ok(())
}

// The tests make their images with the host-tools builders.
#[cfg(all(test, feature = "host-tools"))]
mod tests {
    use super::*;
    use crate::build::avb_image::add_hashtree_footer;
    use crate::verity::FecRoots;
    use crate::ErrorCode;

    fn reader(image: &[u8]) -> impl FnMut(u64, &mut [u8]) -> Result<()> + '_ {
        move |offset, buf| {
            let start = offset as usize;
            buf.copy_from_slice(&image[start..start + buf.len()]);
            Ok(())
        }
    }

    fn hash_descriptor(data: &[u8], alg: &str) -> HashDescriptor {
        let salt = b"boot salt".to_vec();
        let algorithm = if alg == "sha256" {
            &ring::digest::SHA256
        } else {
            &ring::digest::SHA512
        };
        let mut ctx = ring::digest::Context::new(algorithm);
        ctx.update(&salt);
        ctx.update(data);
        HashDescriptor {
            image_size: data.len() as u64,
            hash_algorithm: alg.into(),
            partition_name: "boot".into(),
            salt,
            digest: ctx.finish().as_ref().to_vec(),
            flags: 0,
        }
    }

    #[test]
    fn partition_names_are_lower_case_ascii_and_bounded() {
        for ok in ["boot", "vbmeta_system", "init_boot", "a", &"x".repeat(29)] {
            validate_partition_name(ok).unwrap();
        }
        for bad in [
            "",
            "../boot",
            "Boot",
            "boot/x",
            "bo ot",
            "boot\0",
            "é",
            &"x".repeat(30),
        ] {
            let e = validate_partition_name(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::AvbSignature, "{bad:?}");
        }
    }

    #[test]
    fn hash_descriptor_covers_exactly_image_size_bytes() {
        let mut image: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let desc = hash_descriptor(&image[..12_345], "sha256");
        desc.check_contents(image.len() as u64, reader(&image))
            .unwrap();
        hash_descriptor(&image[..12_345], "sha512")
            .check_contents(image.len() as u64, reader(&image))
            .unwrap();
        // Bytes past image_size are not covered (the vbmeta and footer live there).
        image[12_345] ^= 1;
        desc.check_contents(image.len() as u64, reader(&image))
            .unwrap();
        image[12_344] ^= 1;
        let e = desc
            .check_contents(image.len() as u64, reader(&image))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbContents, "{e}");
        // A partition shorter than image_size.
        let e = desc.check_contents(12_000, reader(&image)).unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbContents, "{e}");
        // Metadata libavb refuses.
        for bad in [
            HashDescriptor {
                hash_algorithm: "sha1".into(),
                ..desc.clone()
            },
            HashDescriptor {
                digest: vec![],
                ..desc.clone()
            },
        ] {
            let e = bad
                .check_contents(image.len() as u64, reader(&image))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::AvbSignature, "{e}");
        }
    }

    #[test]
    fn hashtree_descriptor_checks_root_and_stored_tree() {
        let data: Vec<u8> = (0..64 * 4096u32).map(|i| (i * 13 % 241) as u8).collect();
        let (image, desc) =
            add_hashtree_footer(&data, 400 << 10, "system", b"salt", FecRoots::DEFAULT).unwrap();
        let size = image.len() as u64;
        desc.check_contents(size, reader(&image)).unwrap();

        let mut bad_data = image.clone();
        bad_data[5 * 4096 + 17] ^= 0x40;
        let e = desc.check_contents(size, reader(&bad_data)).unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbContents, "{e}");
        assert!(e.message.contains("root digest"), "{e}");

        let mut bad_tree = image.clone();
        bad_tree[desc.tree_offset as usize + 100] ^= 1;
        let e = desc.check_contents(size, reader(&bad_tree)).unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbContents, "{e}");
        assert!(e.message.contains("tree byte 100"), "{e}");

        let e = desc
            .check_contents(desc.tree_offset + desc.tree_size - 1, reader(&image))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::AvbContents, "{e}");

        for bad in [
            HashtreeDescriptor {
                hash_algorithm: "SHA256".into(),
                ..desc.clone()
            },
            HashtreeDescriptor {
                tree_size: desc.tree_size + 4096,
                ..desc.clone()
            },
            HashtreeDescriptor {
                image_size: desc.image_size + 1,
                ..desc.clone()
            },
            HashtreeDescriptor {
                root_digest: vec![],
                ..desc.clone()
            },
            HashtreeDescriptor {
                image_size: u64::MAX - 4095,
                ..desc.clone()
            },
        ] {
            let e = bad.check_contents(size, reader(&image)).unwrap_err();
            assert!(
                matches!(e.code, ErrorCode::AvbSignature | ErrorCode::AvbContents),
                "{e}"
            );
        }
    }
}
