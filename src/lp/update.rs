//! The target slot's metadata for a non-snapshot update, as update_engine's
//! `PrepareDynamicPartitionsForUpdate` / `UpdatePartitionMetadata` make it.

use super::builder::Builder;
use super::error::LpError;
use super::metadata::{Metadata, ATTR_MASK_V0};
use super::{ATTR_READONLY, HEADER_FLAG_VIRTUAL_AB_DEVICE, SUPER_NAME};

/// One group of the payload's `dynamic_partition_metadata`, without slot suffix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicGroup {
    /// The group's name.
    pub name: String,
    /// Maximum size of the group in bytes.
    pub size: u64,
    /// Partition names without slot suffix.
    pub partitions: Vec<String>,
}

/// [`prepare_target_on`] with "Virtual A/B device" taken from the source header's
/// VIRTUAL_AB_DEVICE flag.
pub fn prepare_target(
    source: &Metadata,
    target_suffix: &str,
    groups: &[DynamicGroup],
    new_sizes: &[(String, u64)],
) -> Result<Metadata, LpError> {
    let vab = source.header_flags() & HEADER_FLAG_VIRTUAL_AB_DEVICE != 0;
    prepare_target_on(source, target_suffix, groups, new_sizes, vab)
}

/// The target slot's metadata from the source slot's: on a Virtual A/B device the header is
/// first downgraded to 10.0 (liblp's `SetMetadataHeaderV0`: flags zeroed, UPDATED/DISABLED
/// cleared); the `cow` group and every group ending in `target_suffix` go with their
/// partitions; the groups' total is checked against the space limit (half of super's
/// allocatable space, all of it on a Virtual A/B device); then `<group><suffix>` and
/// READONLY `<partition><suffix>` are added and sized from `new_sizes` (bytes, by name
/// without suffix), extents from aligned free space. `_b` partitions on a non-VAB device
/// are placed in super's second half first, as liblp does on an A/B device.
pub fn prepare_target_on(
    source: &Metadata,
    target_suffix: &str,
    groups: &[DynamicGroup],
    new_sizes: &[(String, u64)],
    virtual_ab: bool,
) -> Result<Metadata, LpError> {
    if target_suffix.is_empty() {
        return Err(LpError::bad_request("empty target slot suffix"));
    }
    let mut start = source.clone();
    if virtual_ab {
        start.minor_version = 0;
        start.flags = 0;
        for p in &mut start.partitions {
            p.attributes &= ATTR_MASK_V0;
        }
    }
    let mut b = Builder::from_metadata(&start)?;
    b.halve_super = !virtual_ab
        && start
            .block_devices
            .first()
            .map(|d| d.partition_name.as_str())
            == Some(SUPER_NAME);
    b.remove_group_and_partitions("cow");
    for g in b.group_names() {
        if g.ends_with(target_suffix) {
            b.remove_group_and_partitions(&g);
        }
    }
    let total = groups
        .iter()
        .try_fold(0u64, |s, g| s.checked_add(g.size))
        .ok_or_else(|| LpError::no_space("the groups' sizes overflow"))?;
    let full = b.allocatable_space();
    let (limit, what) = if virtual_ab {
        (full, "")
    } else {
        (full / 2, "half of ")
    };
    if total > limit {
        return Err(LpError::no_space(format!(
            "the target groups need {total} bytes, more than {what}super's allocatable {full}"
        )));
    }
    for g in groups {
        let group = format!("{}{target_suffix}", g.name);
        b.add_group(&group, g.size)?;
        for name in &g.partitions {
            let Some((_, size)) = new_sizes.iter().find(|(n, _)| n == name) else {
                return Err(LpError::bad_request(format!(
                    "group {} lists partition {name}, which has no new size",
                    g.name
                )));
            };
            let partition = format!("{name}{target_suffix}");
            b.add_partition(&partition, &group, ATTR_READONLY)?;
            b.resize_partition(&partition, *size)?;
        }
    }
    b.export()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lp::{NewSuper, ATTR_SLOT_SUFFIXED, ATTR_UPDATED};

    const MIB: u64 = 1 << 20;

    fn source(vab: bool) -> Metadata {
        let mut s = NewSuper::new(64 * MIB, 65536, 2)
            .group("g_a", 20 * MIB)
            .partition(
                "system_a",
                ATTR_READONLY | ATTR_UPDATED,
                4 * MIB,
                Some("g_a"),
            );
        s.virtual_ab = vab;
        s.build().unwrap().1
    }

    fn groups() -> Vec<DynamicGroup> {
        vec![DynamicGroup {
            name: "g".into(),
            size: 20 * MIB,
            partitions: vec!["system".into()],
        }]
    }

    #[test]
    fn virtual_ab_source_is_downgraded_to_v0() {
        let src = source(true);
        assert_eq!((src.header_version(), src.header_flags()), ((10, 2), 1));
        let t = prepare_target(&src, "_b", &groups(), &[("system".into(), MIB)]).unwrap();
        assert_eq!((t.header_version(), t.header_flags()), ((10, 0), 0));
        assert_eq!(t.partition("system_a").unwrap().attributes, ATTR_READONLY);
        assert_eq!(t.partition("system_b").unwrap().attributes, ATTR_READONLY);
    }

    #[test]
    fn non_vab_keeps_updated_and_needs_10_1() {
        let src = source(false);
        assert_eq!(src.header_version(), (10, 1));
        let t = prepare_target(&src, "_b", &groups(), &[("system".into(), MIB)]).unwrap();
        assert_eq!(t.header_version(), (10, 1));
        let a = t.partition("system_a").unwrap().attributes;
        assert_eq!(a, ATTR_READONLY | ATTR_UPDATED);
        assert_eq!(a & ATTR_SLOT_SUFFIXED, 0);
        // Sizes round up to the logical block size.
        let b = t.partition("system_b").unwrap();
        assert_eq!(t.partition_size(b), MIB);
        let odd = prepare_target(&src, "_b", &groups(), &[("system".into(), MIB + 1)]).unwrap();
        assert_eq!(
            odd.partition_size(odd.partition("system_b").unwrap()),
            MIB + 4096
        );
    }

    #[test]
    fn bad_requests() {
        let src = source(false);
        let sizes = [("system".to_string(), MIB)];
        let e = prepare_target(&src, "", &groups(), &sizes).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::MalformedPayload);
        let mut dup = groups();
        dup[0].size = 5 * MIB;
        dup.push(dup[0].clone());
        let e = prepare_target(&src, "_b", &dup, &sizes).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::MalformedPayload);
        let mut bad = groups();
        bad[0].partitions = vec!["../x".into()];
        let e = prepare_target(&src, "_b", &bad, &[("../x".into(), MIB)]).unwrap_err();
        assert_eq!(e.code(), crate::ErrorCode::MalformedPayload);
    }
}
