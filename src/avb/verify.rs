//! Signature checks: one image against its embedded key, and a top-level image with its chained
//! partitions against the key the device trusts (what `avb_slot_verify` does for keys).

use std::collections::HashSet;

use super::descriptor::ChainPartitionDescriptor;
use super::image::VbmetaImage;
use super::key::AvbPublicKey;
use crate::error::Result;

/// What [`VbmetaImage::verify`] established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification<'a> {
    /// The hash and signature match the image, made with this embedded key. Whether the key is
    /// one to trust is the caller's question ([`VbmetaImage::verify_with_key`] answers it).
    Signed(&'a AvbPublicKey),
    /// Algorithm `NONE`: there is nothing to check. A locked bootloader refuses such an image; an
    /// unlocked one boots it. The caller decides.
    Unsigned,
}

impl VbmetaImage {
    /// Checks the stored hash of `header || auxiliary block` and the PKCS#1 v1.5 signature over
    /// the same bytes with the embedded key, like `avb_vbmeta_image_verify`. Errors are code 28.
    ///
    /// Covered: all 256 header bytes (reserved ones too), the whole auxiliary block (padding
    /// too), and the hash and signature themselves. Not covered: authentication-block bytes
    /// outside the hash and signature (avbtool's zero padding up to a multiple of 64), and any
    /// bytes after the image.
    pub fn verify(&self) -> Result<Verification<'_>> {
        let (Some(key), Some(digest)) = (self.public_key(), self.algorithm().digest()) else {
            return Ok(Verification::Unsigned);
        };
        let data = self.signed_data();
        let computed = ring::digest::digest(digest, &data);
        if computed.as_ref() != self.stored_hash() {
            crate::bail!(
                AvbSignature,
                "vbmeta: stored hash does not match header and auxiliary block"
            );
        }
        key.verify(self.algorithm(), &data, self.stored_signature())
            .map_err(|e| crate::err!(AvbSignature, "vbmeta: {}", e.message))?;
        Ok(Verification::Signed(key))
    }

    /// [`verify`](Self::verify), then requires the image to be signed with `expected` (byte-equal
    /// AVB key blobs, as libavb compares them). Unsigned images are refused. Code 28.
    pub fn verify_with_key(&self, expected: &AvbPublicKey) -> Result<()> {
        match self.verify()? {
            Verification::Signed(key) if key == expected => Ok(()),
            Verification::Signed(key) => {
                crate::bail!(
                    AvbSignature,
                    "vbmeta signed by {key:?}, expected {expected:?}"
                )
            }
            Verification::Unsigned => {
                crate::bail!(AvbSignature, "vbmeta is unsigned (algorithm NONE)")
            }
        }
    }
}

/// Verifies a slot's vbmeta set as a locked bootloader would, before anything relies on it:
///
/// - `top` (the `vbmeta` partition, or `boot` on devices without one) verifies and is signed by
///   `expected_key`, the key the device trusts;
/// - `chained` names (without slot suffix) each partition's vbmeta, read from its footer; every
///   chain descriptor of `top` must have exactly one entry and every entry a chain descriptor;
/// - each chained image verifies, is signed by exactly the key in its chain descriptor, has
///   flags 0 and holds no chain descriptor itself (libavb only follows chains from the top).
///
/// Any failure is code 28 (`AvbSignature`), naming the partition.
pub fn verify_chain(
    top: &VbmetaImage,
    expected_key: &AvbPublicKey,
    chained: &[(&str, &VbmetaImage)],
) -> Result<()> {
    top.verify_with_key(expected_key)
        .map_err(|e| crate::err!(AvbSignature, "top-level {}", e.message))?;
    for (descriptor, image) in pair_chained(top, chained)? {
        let name = &descriptor.partition_name;
        image
            .verify_with_key(&descriptor.public_key)
            .map_err(|e| crate::err!(AvbSignature, "chained partition {name}: {}", e.message))?;
        if image.flags() != 0 {
            crate::bail!(
                AvbSignature,
                "chained partition {name}: vbmeta flags {:#x}, must be 0",
                image.flags()
            );
        }
        if image.chain_partitions().next().is_some() {
            crate::bail!(
                AvbSignature,
                "chained partition {name}: holds a chain descriptor, only the top level may"
            );
        }
    }
    Ok(())
}

/// Matches each chain descriptor of `top` with the one image given for it. Errors (28) for a
/// missing, duplicate or unchained partition.
pub(crate) fn pair_chained<'a>(
    top: &'a VbmetaImage,
    chained: &[(&str, &'a VbmetaImage)],
) -> Result<Vec<(&'a ChainPartitionDescriptor, &'a VbmetaImage)>> {
    let mut seen = HashSet::new();
    for (name, _) in chained {
        if !seen.insert(*name) {
            crate::bail!(AvbSignature, "chained partition {name} given twice");
        }
        if top.chain_partition(name).is_none() {
            crate::bail!(
                AvbSignature,
                "partition {name} is not chained from the top-level vbmeta"
            );
        }
    }
    top.chain_partitions()
        .map(|descriptor| {
            chained
                .iter()
                .find(|(name, _)| *name == descriptor.partition_name)
                .map(|(_, image)| (descriptor, *image))
                .ok_or_else(|| {
                    crate::err!(
                        AvbSignature,
                        "top-level vbmeta chains {}, whose vbmeta was not given",
                        descriptor.partition_name
                    )
                })
        })
        .collect()
}
