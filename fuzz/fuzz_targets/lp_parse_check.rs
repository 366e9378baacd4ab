//! What the `lp_parse` fuzz target does with an input, shared with the seed replay in
//! `tests/lp_hostile.rs`, so both run exactly the same checks.
//!
//! The input is a geometry struct (its first 52 bytes) followed by one metadata slot. Both
//! go through the strict parsers. A panic is a bug, and so is an `Ok` that breaks a promise:
//! the metadata must serialise back to the very bytes it was parsed from, and a whole
//! metadata region built from it must parse back to the same metadata in every slot.

use abupdate::lp::{flash_image, Geometry, LpError, Metadata, GEOMETRY_SIZE, RESERVED_BYTES};

/// Bytes of the geometry struct at the start of an input.
pub const GEOMETRY_STRUCT: usize = 52;

pub fn run(data: &[u8]) -> Result<Metadata, LpError> {
    let (geometry, slot) = data.split_at(GEOMETRY_STRUCT.min(data.len()));
    let g = Geometry::parse(geometry)?;
    assert_eq!(
        g.to_bytes()[..GEOMETRY_STRUCT],
        geometry[..],
        "geometry does not round-trip"
    );
    let m = Metadata::parse(slot, &g)?;
    let bytes = m.to_bytes(&g).expect("parsed metadata serialises");
    assert_eq!(
        bytes[..],
        slot[..bytes.len()],
        "metadata does not round-trip"
    );
    for p in m.partitions() {
        let _ = m.partition_size(p);
        assert!(m.group_of(p).is_some());
    }
    let _ = m.free_regions();
    // A flashed region only when it is small: the geometry may ask for terabytes.
    if g.total_metadata_size().is_ok_and(|t| t <= 16 << 20) {
        let image = flash_image(&g, &m).expect("flash");
        let again = Geometry::parse_either(
            &image[RESERVED_BYTES as usize..],
            &image[(RESERVED_BYTES + GEOMETRY_SIZE) as usize..],
        )
        .expect("flashed geometry parses");
        for slot in 0..g.metadata_slot_count.min(8) {
            for at in [again.primary_offset(slot), again.backup_offset(slot)] {
                let at = at.expect("slot offset") as usize;
                let copy = &image[at..at + g.metadata_max_size as usize];
                assert_eq!(Metadata::parse(copy, &again).as_ref(), Ok(&m));
            }
        }
    }
    Ok(m)
}
