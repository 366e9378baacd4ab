//! Partial updates: the physical partitions a `partial_update` payload does not carry are
//! copied from the running slot into the target slot before the switch, so the new slot is
//! whole (its vbmeta, `dtbo`, the firmware...) rather than whatever an older update left there.
//!
//! update_engine does the same (`PartitionUpdateGeneratorAndroid`,
//! `GenerateOperationsForPartitionsNotInPayload`): for every partition listed in
//! `ro.vendor.build.ab_ota_partitions` (else `ro.product.ab_ota_partitions`) that the payload
//! does not carry, it adds a `SOURCE_COPY` of the whole partition from the source slot to the
//! target slot, after refusing the update if the two slots' sizes differ or are not a multiple
//! of the block size, and skips partitions that are dynamic in both slots (a partition dynamic
//! in one slot only is an error). abupdate copies every partition present under both slot
//! suffixes in the device's partition directory (`/dev/block/by-name`, or the host device
//! directory): that is every A/B physical partition, a superset of the `ab_ota_partitions`
//! list, which abupdate does not read.
//!
//! Dynamic partitions (in `super`, mapped under `/dev/block/mapper`) never appear in that
//! directory, so none is copied here; keeping them for the target slot is the job of the
//! dynamic-partition code, which hooks in at [`carry_over`]'s caller next to this call.
//!
//! Writes go through the engine's [`SlotPartitions`] (so a recording layer sees them), and a
//! chunk is written only where the target differs from the source: a repeated copy (after a
//! power cut, or a resumed apply) writes nothing it wrote before.

use std::collections::BTreeSet;

use crate::avb::validate_partition_name;
use crate::device::{Device, Layout};
use crate::engine::{Observer, SlotPartitions, SourceRead, TargetWrite};
use crate::error::{Error, Result};
use crate::payload::BLOCK_SIZE;
use crate::slot::Slot;

/// Bytes compared and copied at a time.
const CHUNK: usize = 1 << 20;

/// Copies every A/B physical partition not in `carried` from the running slot to the target.
/// Returns the partitions copied (those whose target differed), sorted. 33 when a partition's
/// two slots differ in size or are not a multiple of the block size, as update_engine refuses;
/// 38 when `observer` cancels (between chunks; a later apply copies the rest).
pub fn carry_over(
    device: &Device,
    partitions: &dyn SlotPartitions,
    carried: &BTreeSet<&str>,
    observer: &dyn Observer,
) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    for name in ab_partitions(device)? {
        if carried.contains(name.as_str()) {
            continue;
        }
        let source = partitions.open_source(&name)?;
        let target = partitions.open_target(&name)?;
        let size = source.size();
        if size != target.size() || size % BLOCK_SIZE != 0 {
            crate::bail!(
                PartitionMissing,
                "partial update: {name} is {size} bytes in the running slot and {} in the \
                 target slot; both must be equal and a multiple of {BLOCK_SIZE} to carry it over",
                target.size()
            );
        }
        if copy_differences(&name, source.as_ref(), target.as_ref(), size, observer)? {
            log::info!("partial update: {name} carried over from the running slot");
            changed.push(name);
        }
    }
    Ok(changed)
}

/// Writes the chunks of `target` that differ from `source`, then syncs if anything was
/// written. Returns whether anything was.
fn copy_differences(
    name: &str,
    source: &dyn SourceRead,
    target: &dyn TargetWrite,
    size: u64,
    observer: &dyn Observer,
) -> Result<bool> {
    let io = |what: &str, offset: u64, e: std::io::Error| {
        Error::io(format!("{what} {name} at {offset}"), e)
    };
    let mut from = vec![0u8; CHUNK];
    let mut to = vec![0u8; CHUNK];
    let mut wrote = false;
    let mut offset = 0u64;
    while offset < size {
        if observer.is_cancelled() {
            crate::bail!(Cancelled, "cancelled while carrying {name} over");
        }
        // At most CHUNK, so it fits usize.
        let n = (size - offset).min(CHUNK as u64) as usize;
        source
            .read_at(&mut from[..n], offset)
            .map_err(|e| io("reading running slot's", offset, e))?;
        target
            .read_at(&mut to[..n], offset)
            .map_err(|e| io("reading target slot's", offset, e))?;
        if from[..n] != to[..n] {
            target
                .write_at(&from[..n], offset)
                .map_err(|e| io("writing", offset, e))?;
            wrote = true;
        }
        offset += n as u64;
    }
    if wrote {
        target.sync().map_err(|e| io("syncing", 0, e))?;
    }
    Ok(wrote)
}

/// The partitions present under both slot suffixes in the device's partition directory, by
/// name without suffix. Entries whose name is not `[a-z0-9_]` are not partitions abupdate
/// addresses and are skipped.
fn ab_partitions(device: &Device) -> Result<BTreeSet<String>> {
    let (dir, ext) = match device.layout() {
        Layout::ByName(dir) => (dir, ""),
        Layout::HostDir(dir) => (dir, ".img"),
    };
    let suffix_a = format!("{}{ext}", Slot::A.suffix());
    let mut names = BTreeSet::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir.display(), e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(&suffix_a)) else {
            continue;
        };
        if validate_partition_name(name).is_err() {
            continue;
        }
        let other = device.partition_path(name, Slot::B);
        match std::fs::symlink_metadata(&other) {
            Ok(_) => {
                names.insert(name.to_owned());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(other.display(), e)),
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Quiet;
    use crate::ErrorCode;

    /// A `/dev/block/by-name`-like directory: names without extension.
    fn by_name(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Device) {
        let dir = tempfile::tempdir().unwrap();
        for (name, data) in files {
            std::fs::write(dir.path().join(name), data).unwrap();
        }
        let device = Device::new(Layout::ByName(dir.path().to_owned()), Slot::A);
        (dir, device)
    }

    #[test]
    fn only_partitions_in_both_slots_with_clean_names_are_listed() {
        let (_dir, device) = by_name(&[
            ("boot_a", b""),
            ("boot_b", b""),
            ("misc", b""),
            ("userdata", b""),
            ("modem_a", b""),
            ("Radio_a", b""),
            ("Radio_b", b""),
            ("dtbo_b", b""),
            ("vbmeta_a", b""),
            ("vbmeta_b", b""),
        ]);
        let names: Vec<_> = ab_partitions(&device).unwrap().into_iter().collect();
        assert_eq!(names, ["boot", "vbmeta"]);
    }

    #[test]
    fn copies_what_differs_once_and_refuses_mismatched_sizes() {
        let block = BLOCK_SIZE as usize;
        let mut source = vec![7u8; 3 * CHUNK + block];
        source[CHUNK + 5] = 1;
        let mut stale = source.clone();
        stale[CHUNK + 5] = 2;
        let (dir, device) = by_name(&[
            ("boot_a", b"kernel\0\0"),
            ("boot_b", b"new\0\0\0\0\0"),
            ("firmware_a", &source),
            ("firmware_b", &stale),
            ("dtbo_a", &vec![1u8; block]),
            ("dtbo_b", &vec![1u8; block]),
        ]);
        let carried = BTreeSet::from(["boot"]);
        let changed = carry_over(&device, &device, &carried, &Quiet).unwrap();
        assert_eq!(changed, ["firmware"]);
        assert_eq!(
            std::fs::read(dir.path().join("firmware_b")).unwrap(),
            source
        );
        assert_eq!(
            std::fs::read(dir.path().join("boot_b")).unwrap(),
            b"new\0\0\0\0\0",
            "a carried partition is left alone"
        );
        assert!(carry_over(&device, &device, &carried, &Quiet)
            .unwrap()
            .is_empty());

        std::fs::write(dir.path().join("dtbo_b"), vec![1u8; 2 * block]).unwrap();
        let e = carry_over(&device, &device, &carried, &Quiet).unwrap_err();
        assert_eq!(e.code, ErrorCode::PartitionMissing, "{e}");
    }
}
