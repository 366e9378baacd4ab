//! Parsing descriptors from an auxiliary block, with libavb's bounds checks.

use super::{
    ChainPartitionDescriptor, Descriptor, HashDescriptor, HashtreeDescriptor,
    KernelCmdlineDescriptor, PropertyDescriptor, HASH_ALGORITHM_LEN, MAX_LOCATIONS, RESERVED,
    TAG_CHAIN_PARTITION, TAG_HASH, TAG_HASHTREE, TAG_KERNEL_CMDLINE, TAG_PROPERTY,
};
use crate::avb::key::AvbPublicKey;
use crate::avb::reader::BeReader;
use crate::error::Result;

/// Parses the descriptor area of an auxiliary block. Every descriptor must lie entirely inside
/// `bytes`, with `num_bytes_following` a multiple of 8 and variable fields inside the body, as
/// libavb's `avb_descriptor_foreach` and `*_validate_and_byteswap` require. Errors are code 28.
pub(crate) fn parse_descriptors(bytes: &[u8]) -> Result<Vec<Descriptor>> {
    let mut reader = BeReader::new(bytes, "descriptor");
    let mut out = Vec::new();
    while reader.remaining() > 0 {
        let tag = reader.u64()?;
        let following = reader.u64()?;
        if following % 8 != 0 {
            crate::bail!(
                AvbSignature,
                "descriptor {}: num_bytes_following {following} is not a multiple of 8",
                out.len()
            );
        }
        let body = reader.take_u64_len(following)?;
        let descriptor = match tag {
            TAG_PROPERTY => Descriptor::Property(parse_property(body)?),
            TAG_HASHTREE => Descriptor::Hashtree(parse_hashtree(body)?),
            TAG_HASH => Descriptor::Hash(parse_hash(body)?),
            TAG_KERNEL_CMDLINE => Descriptor::KernelCmdline(parse_kernel_cmdline(body)?),
            TAG_CHAIN_PARTITION => Descriptor::ChainPartition(parse_chain_partition(body)?),
            tag => Descriptor::Unknown {
                tag,
                data: body.to_vec(),
            },
        };
        out.push(descriptor);
    }
    Ok(out)
}

fn parse_property(body: &[u8]) -> Result<PropertyDescriptor> {
    let mut r = BeReader::new(body, "property descriptor");
    let key_len = r.u64()?;
    let value_len = r.u64()?;
    let key = r.take_u64_len(key_len)?;
    let key_nul = r.take(1)?;
    let value = r.take_u64_len(value_len)?;
    let value_nul = r.take(1)?;
    if key_nul != [0] || value_nul != [0] {
        crate::bail!(
            AvbSignature,
            "property descriptor: key or value is not NUL-terminated"
        );
    }
    Ok(PropertyDescriptor {
        key: utf8(key, "property key")?,
        value: value.to_vec(),
    })
}

fn parse_hashtree(body: &[u8]) -> Result<HashtreeDescriptor> {
    let mut r = BeReader::new(body, "hashtree descriptor");
    let dm_verity_version = r.u32()?;
    let image_size = r.u64()?;
    let tree_offset = r.u64()?;
    let tree_size = r.u64()?;
    let data_block_size = r.u32()?;
    let hash_block_size = r.u32()?;
    let fec_num_roots = r.u32()?;
    let fec_offset = r.u64()?;
    let fec_size = r.u64()?;
    let hash_algorithm = hash_algorithm(r.take(HASH_ALGORITHM_LEN)?)?;
    let name_len = r.u32()?;
    let salt_len = r.u32()?;
    let digest_len = r.u32()?;
    let flags = r.u32()?;
    r.take(RESERVED)?;
    Ok(HashtreeDescriptor {
        dm_verity_version,
        image_size,
        tree_offset,
        tree_size,
        data_block_size,
        hash_block_size,
        fec_num_roots,
        fec_offset,
        fec_size,
        hash_algorithm,
        partition_name: utf8(r.take_u64_len(name_len.into())?, "partition name")?,
        salt: r.take_u64_len(salt_len.into())?.to_vec(),
        root_digest: r.take_u64_len(digest_len.into())?.to_vec(),
        flags,
    })
}

fn parse_hash(body: &[u8]) -> Result<HashDescriptor> {
    let mut r = BeReader::new(body, "hash descriptor");
    let image_size = r.u64()?;
    let hash_algorithm = hash_algorithm(r.take(HASH_ALGORITHM_LEN)?)?;
    let name_len = r.u32()?;
    let salt_len = r.u32()?;
    let digest_len = r.u32()?;
    let flags = r.u32()?;
    r.take(RESERVED)?;
    Ok(HashDescriptor {
        image_size,
        hash_algorithm,
        partition_name: utf8(r.take_u64_len(name_len.into())?, "partition name")?,
        salt: r.take_u64_len(salt_len.into())?.to_vec(),
        digest: r.take_u64_len(digest_len.into())?.to_vec(),
        flags,
    })
}

fn parse_kernel_cmdline(body: &[u8]) -> Result<KernelCmdlineDescriptor> {
    let mut r = BeReader::new(body, "kernel cmdline descriptor");
    let flags = r.u32()?;
    let len = r.u32()?;
    Ok(KernelCmdlineDescriptor {
        flags,
        cmdline: utf8(r.take_u64_len(len.into())?, "kernel command line")?,
    })
}

fn parse_chain_partition(body: &[u8]) -> Result<ChainPartitionDescriptor> {
    let mut r = BeReader::new(body, "chain partition descriptor");
    let rollback_index_location = r.u32()?;
    let name_len = r.u32()?;
    let key_len = r.u32()?;
    let flags = r.u32()?;
    r.take(RESERVED)?;
    let partition_name = utf8(r.take_u64_len(name_len.into())?, "partition name")?;
    // libavb refuses location 0 (it is the top-level image's) and locations past its table.
    if !(1..MAX_LOCATIONS).contains(&rollback_index_location) {
        crate::bail!(
            AvbSignature,
            "chain partition descriptor for {partition_name:?}: rollback index location {rollback_index_location} is not in 1..{MAX_LOCATIONS}"
        );
    }
    let public_key = AvbPublicKey::from_avb_blob(r.take_u64_len(key_len.into())?).map_err(|e| {
        crate::err!(
            AvbSignature,
            "chain partition descriptor for {partition_name:?}: {}",
            e.message
        )
    })?;
    Ok(ChainPartitionDescriptor {
        rollback_index_location,
        partition_name,
        public_key,
        flags,
    })
}

fn utf8(bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| crate::err!(AvbSignature, "{what} is not valid UTF-8"))
}

/// The NUL-padded 32-byte `hash_algorithm` field (no NUL when all 32 bytes are used).
fn hash_algorithm(field: &[u8]) -> Result<String> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    utf8(&field[..end], "hash algorithm")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::avb::descriptor::{put_u32, put_u64};
    use crate::ErrorCode;

    fn samples() -> Vec<Descriptor> {
        vec![
            Descriptor::Property(PropertyDescriptor {
                key: "k".into(),
                value: b"some value".to_vec(),
            }),
            Descriptor::Hashtree(HashtreeDescriptor {
                dm_verity_version: 1,
                image_size: 16384,
                tree_offset: 16384,
                tree_size: 4096,
                data_block_size: 4096,
                hash_block_size: 4096,
                fec_num_roots: 2,
                fec_offset: 20480,
                fec_size: 8192,
                hash_algorithm: "sha256".into(),
                partition_name: "system".into(),
                salt: vec![0xa5; 32],
                root_digest: vec![0x5a; 32],
                flags: HashtreeDescriptor::FLAG_CHECK_AT_MOST_ONCE,
            }),
            Descriptor::Hash(HashDescriptor {
                image_size: 4096,
                hash_algorithm: "sha256".into(),
                partition_name: "boot".into(),
                salt: vec![1; 16],
                digest: vec![],
                flags: 0,
            }),
            Descriptor::KernelCmdline(KernelCmdlineDescriptor {
                flags: 1,
                cmdline: "a=b".into(),
            }),
            Descriptor::Unknown {
                tag: 99,
                data: vec![1, 2, 3, 4, 5, 6, 7, 8],
            },
        ]
    }

    #[test]
    fn encode_parse_round_trip_with_padding_to_8() {
        let mut all = Vec::new();
        for d in samples() {
            let bytes = d.encode().unwrap();
            assert_eq!(bytes.len() % 8, 0);
            assert_eq!(parse_descriptors(&bytes).unwrap(), vec![d.clone()]);
            all.extend(bytes);
        }
        assert_eq!(parse_descriptors(&all).unwrap(), samples());
        // Fixed parts (header included): property 32, hashtree 180, hash 132, cmdline 24; then
        // the variable fields, padded to 8.
        let sizes: Vec<usize> = samples()
            .iter()
            .map(|d| d.encode().unwrap().len())
            .collect();
        assert_eq!(sizes, [32 + 16, 180 + 76, 132 + 20, 24 + 8, 16 + 8]);
    }

    #[test]
    fn every_truncation_and_length_corruption_is_an_error_not_a_panic() {
        for d in samples() {
            let bytes = d.encode().unwrap();
            for len in 1..bytes.len() {
                let e = parse_descriptors(&bytes[..len]).unwrap_err();
                assert_eq!(e.code, ErrorCode::AvbSignature);
            }
            // Blow up each 4-byte length field in turn: parse must fail or succeed, never panic.
            for at in (16..bytes.len().saturating_sub(4)).step_by(4) {
                let mut bad = bytes.clone();
                bad[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
                let _ = parse_descriptors(&bad);
            }
        }
    }

    #[test]
    fn rejects_unaligned_sizes_missing_nuls_and_bad_locations() {
        let mut bytes = samples()[0].encode().unwrap();
        bytes[15] += 1; // num_bytes_following no longer a multiple of 8
        assert!(parse_descriptors(&bytes).is_err());
        let mut bytes = samples()[0].encode().unwrap();
        bytes[32 + 1] = b'x'; // key's NUL
        assert!(parse_descriptors(&bytes).is_err());
        let mut huge = Vec::new();
        put_u64(&mut huge, 0);
        put_u64(&mut huge, u64::MAX - 7);
        assert!(parse_descriptors(&huge).is_err());
        // A chain descriptor at location 0 or 32 is refused before its key is even looked at.
        for location in [0u32, 32] {
            let mut body = Vec::new();
            put_u32(&mut body, location);
            put_u32(&mut body, 4);
            put_u32(&mut body, 0);
            put_u32(&mut body, 0);
            body.extend_from_slice(&[0; RESERVED]);
            body.extend_from_slice(b"boot");
            let e = parse_chain_partition(&body).unwrap_err();
            assert!(e.message.contains("rollback index location"), "{e}");
        }
    }

    #[test]
    fn hash_algorithm_field_is_bounded() {
        let mut d = samples()[2].clone();
        if let Descriptor::Hash(h) = &mut d {
            h.hash_algorithm = "x".repeat(33);
        }
        assert!(d.encode().is_err());
    }
}
