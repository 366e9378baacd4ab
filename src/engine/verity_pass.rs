//! The post-write pass over one target partition: one sequential read that builds the dm-verity
//! hash tree and FEC the manifest asks for (minor version 6+), writes them in place before the
//! read reaches them, and hashes the whole partition for `new_partition_info.hash`.

use super::hashing::ResumableSha256;
use super::{Context, TargetWrite};
use crate::error::{Error, Result};
use crate::payload::manifest::{Partition, PartitionVerity};
use crate::verity::{self, FecEncoder, FecRoots, HashTreeBuilder};
use crate::{bail, err};

/// Small enough for the read buffer to stay in a core's L2 cache between the copy from the page
/// cache and the hashing (1 MiB measured 1.4% more CPU on the apply benchmark).
const CHUNK: u64 = 256 << 10;

/// Byte ranges of the verity work, checked against each other once.
struct Plan {
    data: (u64, u64),
    tree_at: u64,
    tree_end: u64,
    tree: Option<HashTreeBuilder>,
    fec: Option<(u64, u64, u64, FecEncoder)>,
}

/// Reads `[0, size)` of the written partition once; returns its SHA-256.
///
/// `final_up_to(end)` returns once every byte below `end` holds its final content (no later
/// operation writes there), or fails. It is called before each read and before the tree and
/// FEC are written, so the pass can trail the writer while operations are still applied; after
/// the last operation it is a no-op.
pub(super) fn run(
    cx: &Context<'_>,
    p: &Partition,
    target: &dyn TargetWrite,
    final_up_to: &dyn Fn(u64) -> Result<()>,
) -> Result<[u8; 32]> {
    let size = p.new_info.size;
    let mut plan = match &p.verity {
        Some(layout) => {
            Some(plan(layout).map_err(|e| err!(Verity, "partition {}: {}", p.name, e.message))?)
        }
        None => None,
    };
    let mut hash = ResumableSha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = 0u64;
    while at < size {
        if cx.observer.is_cancelled() {
            bail!(Cancelled, "cancelled while verifying partition {}", p.name);
        }
        // Stop chunks at the ends of the hash tree and FEC inputs, so each is finished and
        // written before the read goes past it.
        let mut end = at.saturating_add(CHUNK).min(size);
        if let Some(plan) = &plan {
            for boundary in [Some(plan.data.1), plan.fec.as_ref().map(|f| f.1)]
                .into_iter()
                .flatten()
            {
                if at < boundary && boundary < end {
                    end = boundary;
                }
            }
        }
        let chunk = &mut buf[..(end - at) as usize];
        final_up_to(end)?;
        target
            .read_at(chunk, at)
            .map_err(|e| Error::io(format!("reading target partition {}", p.name), e))?;
        if let Some(plan) = &mut plan {
            feed(plan, chunk, at)?;
            if end == plan.data.1 {
                final_up_to(plan.tree_end)?;
                write_tree(plan, p, target)?;
            }
            if let Some((_, fec_end, fec_at, _)) = &plan.fec {
                if end == *fec_end {
                    let fec_at = *fec_at;
                    let (_, _, _, encoder) = plan
                        .fec
                        .take()
                        .ok_or_else(|| err!(Verity, "FEC state lost"))?;
                    let fec = encoder.finish()?;
                    final_up_to(fec_at + fec.len() as u64)?;
                    target
                        .write_at(&fec, fec_at)
                        .map_err(|e| Error::io(format!("writing FEC of {}", p.name), e))?;
                }
            }
        }
        // Re-read what was just written over (the tree or FEC area) only when the read reaches
        // it, so the hash covers the bytes on disk.
        hash.update(chunk);
        at = end;
    }
    Ok(hash.finish())
}

/// Checks the layout (its extents are already inside the partition: the manifest parser saw
/// to that) and sets up the builders.
fn plan(layout: &PartitionVerity) -> Result<Plan> {
    let alg = layout.algorithm;
    let data = (
        layout.hash_tree_data.byte_offset(),
        layout.hash_tree_data.byte_offset() + layout.hash_tree_data.byte_len(),
    );
    let tree_at = layout.hash_tree.byte_offset();
    let tree_size = verity::hash_tree_size(data.1 - data.0, verity::BLOCK_SIZE, alg)?;
    if tree_size != layout.hash_tree.byte_len() {
        bail!(
            Verity,
            "hash tree extent has {} bytes, the tree needs {tree_size}",
            layout.hash_tree.byte_len()
        );
    }
    if tree_at < data.1 {
        bail!(
            Verity,
            "hash tree at {tree_at} overlaps or precedes its data (ending at {})",
            data.1
        );
    }
    let tree = HashTreeBuilder::new(alg, &layout.salt, data.1 - data.0)?;
    let fec = match &layout.fec {
        None => None,
        Some(f) => {
            let roots = FecRoots::new(f.roots)?;
            let (start, end) = (
                f.data.byte_offset(),
                f.data.byte_offset() + f.data.byte_len(),
            );
            let fec_at = f.fec.byte_offset();
            let expected = verity::fec_size(end - start, roots);
            if expected != f.fec.byte_len() {
                bail!(
                    Verity,
                    "FEC extent has {} bytes, {} roots need {expected}",
                    f.fec.byte_len(),
                    f.roots
                );
            }
            if fec_at < end || end < tree_at + tree_size || start > data.0 {
                bail!(
                    Verity,
                    "FEC extents must cover the data and hash tree and lie after them"
                );
            }
            Some((start, end, fec_at, FecEncoder::new(end - start, roots)?))
        }
    };
    Ok(Plan {
        data,
        tree_at,
        tree_end: tree_at + tree_size,
        tree: Some(tree),
        fec,
    })
}

/// Gives the chunk at `at` to the tree builder and FEC encoder, each for its own range.
fn feed(plan: &mut Plan, chunk: &[u8], at: u64) -> Result<()> {
    let end = at + chunk.len() as u64;
    let slice = |(start, stop): (u64, u64)| -> Option<&[u8]> {
        let (s, e) = (start.max(at), stop.min(end));
        (s < e).then(|| &chunk[(s - at) as usize..(e - at) as usize])
    };
    if let Some(data) = slice(plan.data) {
        if let Some(tree) = &mut plan.tree {
            tree.update(data)?;
        }
    }
    if let Some((start, stop, _, encoder)) = &mut plan.fec {
        if let Some(data) = slice((*start, *stop)) {
            encoder.update(data)?;
        }
    }
    Ok(())
}

fn write_tree(plan: &mut Plan, p: &Partition, target: &dyn TargetWrite) -> Result<()> {
    let builder = plan
        .tree
        .take()
        .ok_or_else(|| err!(Verity, "hash tree finished twice"))?;
    let tree = builder.finish()?;
    log::info!(
        "partition {}: verity root digest {}",
        p.name,
        crate::hex::encode(&tree.root_digest)
    );
    target
        .write_at(&tree.tree, plan.tree_at)
        .map_err(|e| Error::io(format!("writing hash tree of {}", p.name), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::manifest::{Extent, FecLayout};
    use crate::verity::HashAlgorithm;
    use crate::ErrorCode;

    fn ext(start_block: u64, num_blocks: u64) -> Extent {
        Extent {
            start_block,
            num_blocks,
        }
    }

    /// 256 data blocks: a sha256 tree of 2 + 1 blocks; FEC over 259 blocks with 2 roots takes
    /// 2 rounds of 2 blocks.
    fn layout() -> PartitionVerity {
        PartitionVerity {
            hash_tree_data: ext(0, 256),
            hash_tree: ext(256, 3),
            algorithm: HashAlgorithm::Sha256,
            salt: vec![1, 2, 3],
            fec: Some(FecLayout {
                data: ext(0, 259),
                fec: ext(259, 4),
                roots: 2,
            }),
        }
    }

    #[test]
    fn accepts_a_consistent_layout() {
        assert!(plan(&layout()).is_ok());
    }

    #[test]
    fn mismatched_layouts_are_verity_errors() {
        type Spoil = fn(&mut PartitionVerity);
        // An unknown algorithm never gets here: the manifest parser refuses it (21).
        let cases: [(&str, Spoil); 6] = [
            ("tree size", |l| l.hash_tree.num_blocks = 4),
            ("algorithm", |l| l.algorithm = HashAlgorithm::Sha512),
            ("tree inside data", |l| l.hash_tree.start_block = 100),
            ("fec size", |l| l.fec.as_mut().unwrap().fec.num_blocks = 1),
            ("roots", |l| l.fec.as_mut().unwrap().roots = 30),
            ("fec before tree", |l| {
                l.fec.as_mut().unwrap().data.num_blocks = 200
            }),
        ];
        for (what, spoil) in cases {
            let mut l = layout();
            spoil(&mut l);
            let err = plan(&l).err().unwrap_or_else(|| panic!("{what} accepted"));
            assert_eq!(err.code, ErrorCode::Verity, "{what}: {err}");
        }
    }
}
