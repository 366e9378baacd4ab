//! Logical partitions a partial update does not carry, given a place in the target slot.
//!
//! update_engine applies partial updates only as Virtual A/B snapshot updates; there
//! libsnapshot renames the source slot's partitions to the target suffix
//! (`UpdateMetadataForInPlaceSnapshot`) and creates no snapshot for those "not included in
//! the payload", so the target slot maps them on the source's extents. A non-snapshot update
//! keeps the source slot's entries in the target metadata too, so sharing extents would have
//! two entries of one metadata slot map the same sectors. Instead each partition the payload
//! does not carry gets `<name><target suffix>` of the source's size, from free space, in the
//! group its source belongs to (suffix swapped, with the source group's maximum size if the
//! manifest did not name it), and the updater copies the source's content into it.

use super::builder::Builder;
use super::error::LpError;
use super::metadata::Metadata;

/// Adds to `target` (the prepared target metadata) a `<name><target_suffix>` for every
/// `<name><source_suffix>` of `source` for which `carry(name)` is true and the target has
/// none yet. Returns the new metadata and the names (without suffix) added.
pub fn carry_over(
    source: &Metadata,
    target: &Metadata,
    source_suffix: &str,
    target_suffix: &str,
    carry: &dyn Fn(&str) -> bool,
) -> Result<(Metadata, Vec<String>), LpError> {
    let mut b = Builder::from_metadata(target)?;
    let mut added = Vec::new();
    for p in source.partitions() {
        let Some(name) = p.name.strip_suffix(source_suffix) else {
            continue;
        };
        let new_name = format!("{name}{target_suffix}");
        if !carry(name) || target.partition(&new_name).is_some() {
            continue;
        }
        let Some(group) = source.group_of(p) else {
            return Err(LpError::malformed(format!("{} has no group", p.name)));
        };
        let new_group = match group.name.strip_suffix(source_suffix) {
            Some(base) => format!("{base}{target_suffix}"),
            None => group.name.clone(),
        };
        if !b.group_names().contains(&new_group) {
            b.add_group(&new_group, group.maximum_size)?;
        }
        b.add_partition(&new_name, &new_group, p.attributes & super::ATTR_READONLY)?;
        b.resize_partition(&new_name, source.partition_size(p))?;
        added.push(name.to_owned());
    }
    Ok((b.export()?, added))
}
