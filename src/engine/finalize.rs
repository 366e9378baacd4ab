//! Checks around the written data: the delta's base before writing, and every written partition
//! after it (`new_partition_info.hash`, with the verity data written on the way), as
//! update_engine's filesystem verifier does.

use super::checkpoint::Checkpoint;
use super::hashing::ResumableSha256;
use super::{Context, Observer, Progress, SlotPartitions, Stage};
use crate::bail;
use crate::error::{Error, Result};
use crate::payload::manifest::PartitionInfo;

const CHUNK: usize = 1 << 20;

/// Before a delta: the running slot's partition must be exactly the base the delta was made for.
pub(super) fn check_source(
    partitions: &dyn SlotPartitions,
    observer: &dyn Observer,
    name: &str,
    old: &PartitionInfo,
) -> Result<()> {
    let source = partitions.open_source(name)?;
    if source.size() < old.size {
        bail!(
            SourceHash,
            "source partition {name} has {} bytes, the delta's base has {}",
            source.size(),
            old.size
        );
    }
    let digest = hash_range(
        old.size,
        |buf, at| {
            source
                .read_at(buf, at)
                .map_err(|e| Error::io(format!("reading source partition {name}"), e))
        },
        observer,
    )?;
    if digest != old.hash {
        bail!(SourceHash, "source partition {name} is not the base this delta was made for (old_partition_info.hash differs)");
    }
    Ok(())
}

/// After writing: checks each target partition not yet verified against its hash. `digests`
/// holds what the post-write pass already computed while operations were written; the other
/// partitions are read now.
pub(super) fn verify_partitions(
    cx: &Context<'_>,
    cp: &mut Checkpoint,
    digests: &[Option<[u8; 32]>],
) -> Result<()> {
    let partitions = &cx.metadata.manifest.partitions;
    // `Manifest::parse` refused sizes whose sum does not fit; saturating keeps it so for
    // manifests built by hand.
    let total = partitions
        .iter()
        .fold(0u64, |sum, p| sum.saturating_add(p.new_info.size));
    let verified = usize::try_from(cp.verified_partitions).unwrap_or(usize::MAX);
    let mut done = partitions
        .iter()
        .take(verified)
        .fold(0u64, |sum, p| sum.saturating_add(p.new_info.size));
    let precomputed = |i: usize| digests.get(i).copied().flatten();
    let mut unsaved = false;
    for (i, p) in partitions.iter().enumerate().skip(verified) {
        cx.observer.progress(&Progress {
            stage: Stage::Verifying,
            bytes_done: done,
            bytes_total: total,
            operations_done: cp.next_operation as u64,
            operations_total: cx.metadata.manifest.operation_count() as u64,
            partition: Some(p.name.clone()),
        });
        // The same safe point whether the digest is computed now or was during writing.
        if cx.observer.is_cancelled() {
            if unsaved {
                cx.store.save(cp)?;
            }
            bail!(Cancelled, "cancelled before verifying partition {}", p.name);
        }
        let target = cx.partitions.open_target(&p.name)?;
        let digest = match precomputed(i) {
            Some(digest) => digest,
            None => super::verity_pass::run(cx, p, target.as_ref(), &|_| Ok(()))?,
        };
        // The tree and FEC must be durable before the checkpoint says this partition is done.
        target
            .label(super::END_LABEL)
            .map_err(|e| Error::io(format!("labelling {}", p.name), e))?;
        target
            .sync()
            .map_err(|e| Error::io(format!("syncing {}", p.name), e))?;
        if digest != p.new_info.hash {
            bail!(
                PartitionHash,
                "written partition {} does not match new_partition_info.hash",
                p.name
            );
        }
        cp.verified_partitions = u32::try_from(i + 1).unwrap_or(u32::MAX);
        unsaved = true;
        // A checkpoint per partition spares a resume re-reading it. Partitions whose digests
        // are at hand take no time, so the checkpoint waits for one that must be read (or for
        // the caller's, after the last).
        if i + 1 < partitions.len() && precomputed(i + 1).is_none() {
            cx.store.save(cp)?;
            unsaved = false;
        }
        done = done.saturating_add(p.new_info.size);
    }
    Ok(())
}

/// SHA-256 of `[0, size)` read in chunks, stopping early when cancelled.
fn hash_range(
    size: u64,
    mut read_at: impl FnMut(&mut [u8], u64) -> Result<()>,
    observer: &dyn Observer,
) -> Result<[u8; 32]> {
    let mut hash = ResumableSha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < size {
        if observer.is_cancelled() {
            bail!(Cancelled, "cancelled while verifying");
        }
        let n = (size - at).min(CHUNK as u64) as usize;
        read_at(&mut buf[..n], at)?;
        hash.update(&buf[..n]);
        at += n as u64;
    }
    Ok(hash.finish())
}
