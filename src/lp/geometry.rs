//! `LpMetadataGeometry`: where the metadata slots are, stored twice (4096 and 8192).

use super::bytes::{sha256_zeroed, u32_le};
use super::error::{malformed, LpError};
use super::{GEOMETRY_SIZE, RESERVED_BYTES, SECTOR_SIZE};

const GEOMETRY_MAGIC: u32 = 0x616c_4467;
/// `sizeof(LpMetadataGeometry)`.
const STRUCT_SIZE: usize = 52;
const CHECKSUM_AT: usize = 8;

/// The checked geometry: every field liblp reads, the magic and checksum verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// The room of one metadata copy, a multiple of 512.
    pub metadata_max_size: u32,
    /// How many metadata slots (each with a primary and a backup copy), at least 1.
    pub metadata_slot_count: u32,
    /// The logical block size, a non-zero multiple of 512: extents are multiples of it.
    pub logical_block_size: u32,
}

impl Geometry {
    /// Parses one geometry block (at least the 52-byte struct; the rest of the 4096 bytes
    /// is padding liblp ignores). Checks magic, struct size, checksum, slot count and sizes.
    pub fn parse(block: &[u8]) -> Result<Geometry, LpError> {
        if block.len() < STRUCT_SIZE {
            malformed!(
                "geometry block is {} bytes, shorter than the struct",
                block.len()
            );
        }
        let block = block.get(..STRUCT_SIZE).unwrap_or_default();
        if u32_le(block, 0) != GEOMETRY_MAGIC {
            malformed!("geometry has a bad magic {:#x}", u32_le(block, 0));
        }
        let struct_size = u32_le(block, 4);
        if struct_size as usize != STRUCT_SIZE {
            malformed!("geometry struct size is {struct_size}, not {STRUCT_SIZE}");
        }
        if sha256_zeroed(block, CHECKSUM_AT)[..] != block[CHECKSUM_AT..CHECKSUM_AT + 32] {
            malformed!("geometry checksum does not match");
        }
        let g = Geometry {
            metadata_max_size: u32_le(block, 40),
            metadata_slot_count: u32_le(block, 44),
            logical_block_size: u32_le(block, 48),
        };
        g.check()?;
        Ok(g)
    }

    /// The field rules (also applied to a geometry the caller made): at least one slot,
    /// sizes non-zero multiples of 512, a metadata region that fits 64 bits.
    pub(crate) fn check(&self) -> Result<(), LpError> {
        let g = self;
        if g.metadata_slot_count == 0 {
            malformed!("geometry has zero metadata slots");
        }
        if u64::from(g.metadata_max_size) % SECTOR_SIZE != 0 || g.metadata_max_size == 0 {
            malformed!(
                "metadata max size {} is not a non-zero multiple of 512",
                g.metadata_max_size
            );
        }
        if g.logical_block_size == 0 || u64::from(g.logical_block_size) % SECTOR_SIZE != 0 {
            malformed!(
                "logical block size {} is not a non-zero multiple of 512",
                g.logical_block_size
            );
        }
        g.total_metadata_size().map(|_| ())
    }

    /// The primary geometry, or the backup when the primary is bad (as liblp's reader does).
    /// When both are bad, the primary's error is returned.
    pub fn parse_either(primary: &[u8], backup: &[u8]) -> Result<Geometry, LpError> {
        match Geometry::parse(primary) {
            Ok(g) => Ok(g),
            Err(e) => Geometry::parse(backup).map_err(|_| e),
        }
    }

    /// The 4096-byte block liblp's `SerializeGeometry` writes: the struct with its checksum,
    /// zero-padded.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![0u8; GEOMETRY_SIZE as usize];
        out[0..4].copy_from_slice(&GEOMETRY_MAGIC.to_le_bytes());
        out[4..8].copy_from_slice(&(STRUCT_SIZE as u32).to_le_bytes());
        out[40..44].copy_from_slice(&self.metadata_max_size.to_le_bytes());
        out[44..48].copy_from_slice(&self.metadata_slot_count.to_le_bytes());
        out[48..52].copy_from_slice(&self.logical_block_size.to_le_bytes());
        let sum = sha256_zeroed(&out[..STRUCT_SIZE], CHECKSUM_AT);
        out[CHECKSUM_AT..CHECKSUM_AT + 32].copy_from_slice(&sum);
        out
    }

    fn check_slot(&self, slot: u32) -> Result<(), LpError> {
        if slot >= self.metadata_slot_count {
            malformed!(
                "metadata slot {slot} does not exist ({} slots)",
                self.metadata_slot_count
            );
        }
        Ok(())
    }

    /// Byte offset of the primary copy of metadata slot `slot`.
    pub fn primary_offset(&self, slot: u32) -> Result<u64, LpError> {
        self.check_slot(slot)?;
        self.after_geometry(u64::from(slot))
    }

    /// Byte offset of the backup copy of metadata slot `slot`: after every primary copy.
    pub fn backup_offset(&self, slot: u32) -> Result<u64, LpError> {
        self.check_slot(slot)?;
        self.after_geometry(u64::from(self.metadata_slot_count) + u64::from(slot))
    }

    /// The offset of the `n`th metadata copy; a hostile geometry can overflow 64 bits.
    fn after_geometry(&self, n: u64) -> Result<u64, LpError> {
        u64::from(self.metadata_max_size)
            .checked_mul(n)
            .and_then(|b| b.checked_add(RESERVED_BYTES + 2 * GEOMETRY_SIZE))
            .ok_or_else(|| LpError::malformed("metadata slot offset overflows 64 bits"))
    }

    /// The whole metadata region (liblp's `GetTotalMetadataSize`): reserved bytes, then
    /// geometry and every slot, twice.
    pub fn total_metadata_size(&self) -> Result<u64, LpError> {
        let slots = u64::from(self.metadata_max_size) * u64::from(self.metadata_slot_count);
        slots
            .checked_add(GEOMETRY_SIZE)
            .and_then(|one| one.checked_mul(2))
            .and_then(|two| two.checked_add(RESERVED_BYTES))
            .ok_or_else(|| LpError::malformed("metadata region size overflows 64 bits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_liblp() {
        // As liblp's GetPrimaryMetadataOffset and GetBackupMetadataOffset place them: primary n
        // at 4096 + 2*4096 + max*n, backup n after all primaries.
        let g = Geometry {
            metadata_max_size: 65536,
            metadata_slot_count: 3,
            logical_block_size: 4096,
        };
        assert_eq!(g.primary_offset(0), Ok(12288));
        assert_eq!(g.primary_offset(2), Ok(12288 + 2 * 65536));
        assert_eq!(g.backup_offset(0), Ok(12288 + 3 * 65536));
        assert_eq!(g.backup_offset(2), Ok(12288 + 5 * 65536));
        assert_eq!(g.total_metadata_size(), Ok(4096 + 2 * (4096 + 3 * 65536)));
        assert!(g.primary_offset(3).is_err() && g.backup_offset(3).is_err());
        assert_eq!(Geometry::parse(&g.to_bytes()), Ok(g));
        // The largest geometry's offsets do not overflow.
        let big = Geometry {
            metadata_max_size: u32::MAX - 511,
            metadata_slot_count: u32::MAX,
            logical_block_size: 512,
        };
        assert!(big.primary_offset(u32::MAX - 1).is_ok());
        assert!(big.backup_offset(u32::MAX - 1).is_err());
        assert!(big.total_metadata_size().is_err());
    }
}
