//! The `merge_operations` of a Virtual A/B payload's delta partitions, as update_engine's
//! generator derives them from the install operations (`merge_sequence_generator.cc`): a
//! SOURCE_COPY becomes one COW_COPY per extent pair, a diff of one source extent onto one
//! destination extent of the same length one COW_XOR (the device stores the new blocks XOR the
//! old ones, which compress well). Other operations get none: their blocks are written as
//! REPLACE data. The device orders them into a merge sequence (`engine::cow_plan`).

use crate::payload::proto::update_metadata::cow_merge_operation::Type as MergeType;
use crate::payload::proto::update_metadata::install_operation::Type as OpType;
use crate::payload::proto::update_metadata::{CowMergeOperation, InstallOperation};

/// The merge operations of one install operation.
pub fn merge_operations(op: &InstallOperation) -> Vec<CowMergeOperation> {
    let kind = match op.type_() {
        OpType::SOURCE_COPY => MergeType::COW_COPY,
        OpType::SOURCE_BSDIFF | OpType::BROTLI_BSDIFF | OpType::PUFFDIFF | OpType::ZUCCHINI => {
            MergeType::COW_XOR
        }
        _ => return Vec::new(),
    };
    let (src, dst) = (&op.src_extents, &op.dst_extents);
    if src.len() != dst.len()
        || (kind == MergeType::COW_XOR && src.len() != 1)
        || src
            .iter()
            .zip(dst)
            .any(|(s, d)| s.num_blocks() != d.num_blocks())
    {
        return Vec::new();
    }
    src.iter()
        .zip(dst)
        .map(|(s, d)| {
            let mut m = CowMergeOperation::new();
            m.set_type(kind);
            m.src_extent = Some(s.clone()).into();
            m.dst_extent = Some(d.clone()).into();
            m
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::proto::update_metadata::Extent;

    fn extent(start: u64, blocks: u64) -> Extent {
        let mut e = Extent::new();
        e.set_start_block(start);
        e.set_num_blocks(blocks);
        e
    }

    fn op(kind: OpType, src: &[(u64, u64)], dst: &[(u64, u64)]) -> InstallOperation {
        let mut op = InstallOperation::new();
        op.set_type(kind);
        op.src_extents = src.iter().map(|&(s, n)| extent(s, n)).collect();
        op.dst_extents = dst.iter().map(|&(s, n)| extent(s, n)).collect();
        op
    }

    #[test]
    fn copies_pair_extents_and_diffs_of_one_extent_xor() {
        let copy = merge_operations(&op(
            OpType::SOURCE_COPY,
            &[(3, 2), (9, 1)],
            &[(0, 2), (5, 1)],
        ));
        assert_eq!(copy.len(), 2);
        assert!(copy.iter().all(|m| m.type_() == MergeType::COW_COPY));
        assert_eq!(copy[1].src_extent.start_block(), 9);
        assert_eq!(copy[1].dst_extent.start_block(), 5);
        let xor = merge_operations(&op(OpType::BROTLI_BSDIFF, &[(4, 3)], &[(1, 3)]));
        assert_eq!(xor.len(), 1);
        assert_eq!(xor[0].type_(), MergeType::COW_XOR);
        // Lengths that differ, several extents of a diff, data operations: none.
        assert!(merge_operations(&op(OpType::BROTLI_BSDIFF, &[(4, 2)], &[(1, 3)])).is_empty());
        assert!(
            merge_operations(&op(OpType::SOURCE_BSDIFF, &[(0, 1), (2, 1)], &[(0, 2)])).is_empty()
        );
        assert!(merge_operations(&op(OpType::REPLACE, &[], &[(0, 1)])).is_empty());
    }
}
