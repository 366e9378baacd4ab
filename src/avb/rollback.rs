//! AVB rollback protection as policy: which rollback index each image of a slot claims, at which
//! location, and whether those claims clear the device's floors.
//!
//! The bootloader keeps one stored index per location (at most 32) in tamper-evident storage and
//! refuses an image whose index is below it (equal passes). Android user space cannot read those
//! stored values, so abupdate works with lower bounds: the indexes of the slot running now (the
//! bootloader accepted them, and raises its stored values only up to indexes of slots that
//! booted successfully) and its own persisted record (`crate::rollback_store`).

use super::descriptor::MAX_LOCATIONS;
use super::image::VbmetaImage;
use super::verify::pair_chained;
use crate::error::Result;

/// Number of rollback index locations (`AVB_MAX_NUMBER_OF_ROLLBACK_INDEX_LOCATIONS`).
pub const MAX_ROLLBACK_LOCATIONS: usize = MAX_LOCATIONS as usize;

/// A lower bound on the device's stored rollback index, per location.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RollbackFloors {
    floors: [u64; MAX_ROLLBACK_LOCATIONS],
}

/// One image's claim: `partition`'s vbmeta has rollback index `index` at `location`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackClaim {
    /// `None` for the top-level image, else the chained partition's name.
    pub partition: Option<String>,
    /// The rollback index location.
    pub location: u32,
    /// The image's rollback index.
    pub index: u64,
}

impl RollbackFloors {
    /// All floors zero: nothing known.
    pub fn new() -> Self {
        Self::default()
    }

    /// The floors `floors[location]`.
    pub fn from_array(floors: [u64; MAX_ROLLBACK_LOCATIONS]) -> Self {
        RollbackFloors { floors }
    }

    /// The floor of each location, by location.
    pub fn as_array(&self) -> &[u64; MAX_ROLLBACK_LOCATIONS] {
        &self.floors
    }

    /// The floor at `location`, `None` past the last location.
    pub fn get(&self, location: u32) -> Option<u64> {
        self.floors.get(location as usize).copied()
    }

    /// Raises the floor at `location` to `value` if that is higher (floors never go down).
    /// Returns whether it changed. Errors (28) for a location past the last.
    pub fn raise(&mut self, location: u32, value: u64) -> Result<bool> {
        let Some(floor) = self.floors.get_mut(location as usize) else {
            crate::bail!(
                AvbSignature,
                "rollback index location {location} is not below {MAX_ROLLBACK_LOCATIONS}"
            );
        };
        let changed = value > *floor;
        *floor = (*floor).max(value);
        Ok(changed)
    }

    /// The higher of the two floors at every location.
    pub fn max(&self, other: &Self) -> Self {
        let mut floors = self.floors;
        for (floor, theirs) in floors.iter_mut().zip(other.floors) {
            *floor = (*floor).max(theirs);
        }
        RollbackFloors { floors }
    }

    /// Floors from the slot running now: its top-level image and whichever chained images could
    /// be read (a partial set still gives a lower bound). Locations come from
    /// [`rollback_claims`]; several claims at one location keep the highest.
    pub fn from_slot(top: &VbmetaImage, chained: &[(&str, &VbmetaImage)]) -> Result<Self> {
        let mut floors = Self::new();
        for claim in claims(top, chained, false)? {
            floors.raise(claim.location, claim.index)?;
        }
        Ok(floors)
    }
}

/// The rollback index every image of a slot claims: the top-level image at its header's
/// location, each chained image at the location in `top`'s chain descriptor for it (never 0;
/// the chained header's own location field is ignored, as libavb ignores it). Every chain
/// descriptor of `top` needs exactly one image in `chained` and every image a descriptor
/// (code 28 otherwise).
pub fn rollback_claims(
    top: &VbmetaImage,
    chained: &[(&str, &VbmetaImage)],
) -> Result<Vec<RollbackClaim>> {
    claims(top, chained, true)
}

/// Refuses (code 27, `RollbackIndex`) a slot any of whose images has a rollback index below
/// the floor at its location; equal passes. The image set must be complete as for
/// [`rollback_claims`] (code 28 otherwise), so no chained partition escapes the check.
/// Signatures are not looked at: call `verify_chain` too.
pub fn check_rollback(
    top: &VbmetaImage,
    chained: &[(&str, &VbmetaImage)],
    floors: &RollbackFloors,
) -> Result<()> {
    let mut below = Vec::new();
    for claim in rollback_claims(top, chained)? {
        // Claims come from parsed images, whose locations are all below 32.
        let floor = floors.get(claim.location).unwrap_or(u64::MAX);
        if claim.index < floor {
            let name = claim.partition.as_deref().unwrap_or("top-level vbmeta");
            below.push(format!(
                "{name} has {} < {floor} at location {}",
                claim.index, claim.location
            ));
        }
    }
    if !below.is_empty() {
        crate::bail!(
            RollbackIndex,
            "rollback index below the device's floor: {}",
            below.join("; ")
        );
    }
    Ok(())
}

fn claims(
    top: &VbmetaImage,
    chained: &[(&str, &VbmetaImage)],
    complete: bool,
) -> Result<Vec<RollbackClaim>> {
    let mut out = vec![RollbackClaim {
        partition: None,
        location: top.rollback_index_location(),
        index: top.rollback_index(),
    }];
    let pairs = if complete {
        pair_chained(top, chained)?
    } else {
        let mut pairs = Vec::new();
        for (name, image) in chained {
            let Some(descriptor) = top.chain_partition(name) else {
                crate::bail!(
                    AvbSignature,
                    "partition {name} is not chained from the top-level vbmeta"
                );
            };
            pairs.push((descriptor, *image));
        }
        pairs
    };
    for (descriptor, image) in pairs {
        out.push(RollbackClaim {
            partition: Some(descriptor.partition_name.clone()),
            location: descriptor.rollback_index_location,
            index: image.rollback_index(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn floors_only_rise() {
        let mut floors = RollbackFloors::new();
        assert!(floors.raise(3, 10).unwrap());
        assert!(!floors.raise(3, 4).unwrap());
        assert!(!floors.raise(3, 10).unwrap());
        assert_eq!(floors.get(3), Some(10));
        assert_eq!(floors.get(32), None);
        assert_eq!(
            floors.raise(32, 1).unwrap_err().code,
            ErrorCode::AvbSignature
        );
        let mut other = RollbackFloors::new();
        other.raise(3, 7).unwrap();
        other.raise(31, u64::MAX).unwrap();
        let merged = floors.max(&other);
        assert_eq!(
            (merged.get(3), merged.get(31), merged.get(0)),
            (Some(10), Some(u64::MAX), Some(0))
        );
        assert_eq!(merged, other.max(&floors));
    }
}
