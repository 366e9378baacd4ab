//! The contents half of the pre-switch AVB check: every hash and hashtree descriptor in a
//! slot's vbmeta images (the top level and the chained ones) against the partition it names in
//! that slot, as `avb_slot_verify` checks hash descriptors at boot and dm-verity checks hash
//! trees on every read.
//!
//! Descriptors with the `DO_NOT_USE_AB` flag name a partition without slot suffix: it is not
//! part of either slot, an A/B update never writes it, and [`crate::device::Device`] addresses only slotted
//! partitions, so those are left to the bootloader. Everything else is read whole: this costs
//! one read of each verified partition (update_engine's `FilesystemVerifierAction` reads them
//! all too), and writes nothing.

use super::avb_check::{ReadPartition, SlotVbmeta};
use crate::avb::{validate_partition_name, Descriptor, HashDescriptor, HashtreeDescriptor};
use crate::engine::Observer;
use crate::error::{Error, Result};
use crate::slot::Slot;
use crate::ErrorCode;

/// Checks every hash and hashtree descriptor of `vbmeta` (already signature-checked) against
/// `slot`'s partitions, opened by `read`. 28 for a partition name that is not `[a-z0-9_]`, 43 for a partition
/// that is missing, shorter than its descriptor covers, or whose contents do not match; 38
/// when `observer` cancels (checked before every read).
pub fn check(
    read: ReadPartition<'_>,
    slot: Slot,
    vbmeta: &SlotVbmeta,
    observer: &dyn Observer,
) -> Result<()> {
    for (image_name, image) in vbmeta.images() {
        for descriptor in image.descriptors() {
            let (name, not_ab) = match descriptor {
                Descriptor::Hash(d) => (
                    &d.partition_name,
                    d.flags & HashDescriptor::FLAG_DO_NOT_USE_AB,
                ),
                Descriptor::Hashtree(d) => (
                    &d.partition_name,
                    d.flags & HashtreeDescriptor::FLAG_DO_NOT_USE_AB,
                ),
                _ => continue,
            };
            // The messages below name the partition already; this says where the descriptor is.
            let context = |e: Error| {
                Error::new(
                    e.code,
                    format!(
                        "slot {slot}, descriptor in {image_name}'s vbmeta: {}",
                        e.message
                    ),
                )
            };
            validate_partition_name(name).map_err(context)?;
            if not_ab != 0 {
                log::info!("{name} has no slot suffix (DO_NOT_USE_AB); left to the bootloader");
                continue;
            }
            let part = read(name).map_err(|e| match e.code {
                ErrorCode::PartitionMissing => {
                    context(crate::err!(AvbContents, "{name} is missing: {}", e.message))
                }
                _ => context(e),
            })?;
            let size = part.size();
            let read_at = |offset: u64, buf: &mut [u8]| {
                if observer.is_cancelled() {
                    crate::bail!(Cancelled, "cancelled while checking {name}");
                }
                part.read_at(buf, offset)
                    .map_err(|e| Error::io(format!("reading {name} at {offset}"), e))
            };
            match descriptor {
                Descriptor::Hash(d) => d.check_contents(size, read_at),
                Descriptor::Hashtree(d) => d.check_contents(size, read_at),
                _ => Ok(()),
            }
            .map_err(context)?;
        }
    }
    Ok(())
}
