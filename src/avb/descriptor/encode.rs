//! Encoding descriptors byte-for-byte as avbtool does.

use super::{Descriptor, HASH_ALGORITHM_LEN, RESERVED};
use crate::error::Result;

impl Descriptor {
    /// Serialises the descriptor as avbtool does: header with `num_bytes_following` rounded up to
    /// 8, fixed fields, variable fields, zero padding. Errors (28) when a field does not fit its
    /// on-disk width.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        match self {
            Self::Property(p) => {
                put_u64(&mut body, p.key.len() as u64);
                put_u64(&mut body, p.value.len() as u64);
                body.extend_from_slice(p.key.as_bytes());
                body.push(0);
                body.extend_from_slice(&p.value);
                body.push(0);
            }
            Self::Hashtree(h) => {
                put_u32(&mut body, h.dm_verity_version);
                put_u64(&mut body, h.image_size);
                put_u64(&mut body, h.tree_offset);
                put_u64(&mut body, h.tree_size);
                put_u32(&mut body, h.data_block_size);
                put_u32(&mut body, h.hash_block_size);
                put_u32(&mut body, h.fec_num_roots);
                put_u64(&mut body, h.fec_offset);
                put_u64(&mut body, h.fec_size);
                put_hash_algorithm(&mut body, &h.hash_algorithm)?;
                put_len32(&mut body, h.partition_name.len(), "partition name")?;
                put_len32(&mut body, h.salt.len(), "salt")?;
                put_len32(&mut body, h.root_digest.len(), "root digest")?;
                put_u32(&mut body, h.flags);
                body.extend_from_slice(&[0; RESERVED]);
                body.extend_from_slice(h.partition_name.as_bytes());
                body.extend_from_slice(&h.salt);
                body.extend_from_slice(&h.root_digest);
            }
            Self::Hash(h) => {
                put_u64(&mut body, h.image_size);
                put_hash_algorithm(&mut body, &h.hash_algorithm)?;
                put_len32(&mut body, h.partition_name.len(), "partition name")?;
                put_len32(&mut body, h.salt.len(), "salt")?;
                put_len32(&mut body, h.digest.len(), "digest")?;
                put_u32(&mut body, h.flags);
                body.extend_from_slice(&[0; RESERVED]);
                body.extend_from_slice(h.partition_name.as_bytes());
                body.extend_from_slice(&h.salt);
                body.extend_from_slice(&h.digest);
            }
            Self::KernelCmdline(k) => {
                put_u32(&mut body, k.flags);
                put_len32(&mut body, k.cmdline.len(), "kernel command line")?;
                body.extend_from_slice(k.cmdline.as_bytes());
            }
            Self::ChainPartition(c) => {
                put_u32(&mut body, c.rollback_index_location);
                put_len32(&mut body, c.partition_name.len(), "partition name")?;
                let key = c.public_key.to_avb_blob();
                put_len32(&mut body, key.len(), "public key")?;
                put_u32(&mut body, c.flags);
                body.extend_from_slice(&[0; RESERVED]);
                body.extend_from_slice(c.partition_name.as_bytes());
                body.extend_from_slice(key);
            }
            Self::Unknown { data, .. } => body.extend_from_slice(data),
        }
        body.resize(body.len().next_multiple_of(8), 0);
        let mut out = Vec::with_capacity(16 + body.len());
        put_u64(&mut out, self.tag());
        put_u64(&mut out, body.len() as u64);
        out.extend(body);
        Ok(out)
    }
}

fn put_hash_algorithm(out: &mut Vec<u8>, name: &str) -> Result<()> {
    if name.len() > HASH_ALGORITHM_LEN || name.as_bytes().contains(&0) {
        crate::bail!(
            AvbSignature,
            "hash algorithm {name:?} does not fit {HASH_ALGORITHM_LEN} bytes"
        );
    }
    out.extend_from_slice(name.as_bytes());
    out.resize(out.len() + HASH_ALGORITHM_LEN - name.len(), 0);
    Ok(())
}

fn put_len32(out: &mut Vec<u8>, len: usize, what: &str) -> Result<()> {
    let len = u32::try_from(len)
        .map_err(|_| crate::err!(AvbSignature, "{what} of {len} bytes is too long"))?;
    put_u32(out, len);
    Ok(())
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}
