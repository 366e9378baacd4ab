//! The manifest, parsed once into checked, typed structures.
//!
//! Everything a hostile payload could use to make the engine misbehave is rejected here, before a
//! single byte is written: extents outside their partition, blobs that are not contiguous or run
//! past the payload, absurd counts and sizes, bad partition names, a verity hash algorithm the
//! engine does not know (all 21, `MalformedPayload`). Code downstream relies on these invariants
//! instead of re-checking them; what is left for the verity pass (42, `Verity`) is how the
//! extents fit the tree and FEC sizes the algorithm implies.

use std::collections::HashSet;

use protobuf::Message;

use super::proto::update_metadata as pb;
use crate::error::{Error, Result};
use crate::verity::HashAlgorithm;
use crate::{bail, err};

/// The payload block size: extents count blocks of 4096 bytes (the only `block_size`
/// update_engine accepts).
pub const BLOCK_SIZE: u64 = 4096;

/// Limits that bound memory and work; real payloads are far below them (a full Pixel OTA has a
/// few dozen partitions and some tens of thousands of operations).
pub const MAX_PARTITIONS: usize = 128;
/// Decoded, an operation takes about 200 bytes before its extents and hashes: a million of
/// them stay within `decode_cost::MAX_DECODED_BYTES`.
pub const MAX_OPERATIONS: usize = 1 << 20;
/// The most source or destination extents one operation may have.
pub const MAX_EXTENTS_PER_OP: usize = 1 << 16;
/// Every operation's output and blob are held in memory while it is applied (as update_engine
/// does); this caps both. AOSP's generator splits full images into 2 MiB chunks, and deltas
/// into file-sized operations. Being far below 4 GiB, it also makes the engine's `as usize` of
/// blob and extent lengths exact on 32-bit devices.
pub const MAX_OP_BYTES: u64 = 256 << 20;
const MAX_NAME_LEN: usize = 64;
/// liblp's name fields (partitions, groups) are 36 bytes with a terminating NUL.
const LP_NAME_MAX: usize = 35;
/// The highest minor version whose format this engine understands (9 adds LZ4DIFF).
pub const MAX_MINOR_VERSION: u32 = 9;
/// Minor version from which the manifest carries verity hash tree and FEC extents.
pub const VERITY_MINOR_VERSION: u32 = 6;

/// A run of `num_blocks` blocks from block `start_block` (`Extent` in update_metadata.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    /// First block.
    pub start_block: u64,
    /// Number of blocks.
    pub num_blocks: u64,
}

impl Extent {
    /// Offset of the first byte.
    pub fn byte_offset(&self) -> u64 {
        self.start_block * BLOCK_SIZE
    }
    /// Length in bytes.
    pub fn byte_len(&self) -> u64 {
        self.num_blocks * BLOCK_SIZE
    }
    /// The block after the last one.
    pub fn end_block(&self) -> u64 {
        self.start_block + self.num_blocks
    }
}

/// Operation types, by their AOSP names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// `REPLACE`: the blob is the data.
    Replace,
    /// `REPLACE_BZ`: the blob is bzip2-compressed data.
    ReplaceBz,
    /// `REPLACE_XZ`: the blob is xz-compressed data.
    ReplaceXz,
    /// `ZSTD`: the blob is zstd-compressed data.
    Zstd,
    /// `ZERO`: write zeros (no blob).
    Zero,
    /// `DISCARD`: the blocks' contents do not matter (no blob).
    Discard,
    /// `SOURCE_COPY`: copy blocks from the source slot.
    SourceCopy,
    /// `SOURCE_BSDIFF`: a bsdiff patch over source blocks.
    SourceBsdiff,
    /// `BROTLI_BSDIFF`: a BSDF2 patch (brotli-compressed streams) over source blocks.
    BrotliBsdiff,
    /// `PUFFDIFF`: a puffin patch over the deflate streams of source blocks.
    Puffdiff,
    /// `ZUCCHINI`: a zucchini patch (not supported).
    Zucchini,
    /// `LZ4DIFF_BSDIFF`: bsdiff over the decompressed contents of LZ4-compressed clusters.
    Lz4diffBsdiff,
    /// `LZ4DIFF_PUFFDIFF`: puffdiff over the decompressed contents of LZ4-compressed clusters.
    Lz4diffPuffdiff,
    /// `MOVE`: minor version 1's in-place move (not supported).
    Move,
    /// `BSDIFF`: minor version 1's in-place bsdiff (not supported).
    Bsdiff,
}

impl OpKind {
    /// The AOSP name (`InstallOperation.Type`), e.g. `SOURCE_BSDIFF`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Replace => "REPLACE",
            OpKind::ReplaceBz => "REPLACE_BZ",
            OpKind::ReplaceXz => "REPLACE_XZ",
            OpKind::Zstd => "ZSTD",
            OpKind::Zero => "ZERO",
            OpKind::Discard => "DISCARD",
            OpKind::SourceCopy => "SOURCE_COPY",
            OpKind::SourceBsdiff => "SOURCE_BSDIFF",
            OpKind::BrotliBsdiff => "BROTLI_BSDIFF",
            OpKind::Puffdiff => "PUFFDIFF",
            OpKind::Zucchini => "ZUCCHINI",
            OpKind::Lz4diffBsdiff => "LZ4DIFF_BSDIFF",
            OpKind::Lz4diffPuffdiff => "LZ4DIFF_PUFFDIFF",
            OpKind::Move => "MOVE",
            OpKind::Bsdiff => "BSDIFF",
        }
    }

    /// Whether this engine can apply the operation.
    pub fn is_supported(self) -> bool {
        !matches!(self, OpKind::Move | OpKind::Bsdiff)
    }

    /// Operations that carry a data blob.
    pub fn has_blob(self) -> bool {
        !matches!(
            self,
            OpKind::Zero | OpKind::Discard | OpKind::SourceCopy | OpKind::Move
        )
    }

    /// Operations that read the source slot.
    pub fn reads_source(self) -> bool {
        matches!(
            self,
            OpKind::SourceCopy
                | OpKind::SourceBsdiff
                | OpKind::BrotliBsdiff
                | OpKind::Puffdiff
                | OpKind::Zucchini
                | OpKind::Lz4diffBsdiff
                | OpKind::Lz4diffPuffdiff
        )
    }

    fn from_proto(t: pb::install_operation::Type) -> Self {
        use pb::install_operation::Type as T;
        match t {
            T::REPLACE => OpKind::Replace,
            T::REPLACE_BZ => OpKind::ReplaceBz,
            T::MOVE => OpKind::Move,
            T::BSDIFF => OpKind::Bsdiff,
            T::SOURCE_COPY => OpKind::SourceCopy,
            T::SOURCE_BSDIFF => OpKind::SourceBsdiff,
            T::ZERO => OpKind::Zero,
            T::DISCARD => OpKind::Discard,
            T::REPLACE_XZ => OpKind::ReplaceXz,
            T::PUFFDIFF => OpKind::Puffdiff,
            T::BROTLI_BSDIFF => OpKind::BrotliBsdiff,
            T::ZUCCHINI => OpKind::Zucchini,
            T::LZ4DIFF_BSDIFF => OpKind::Lz4diffBsdiff,
            T::LZ4DIFF_PUFFDIFF => OpKind::Lz4diffPuffdiff,
            T::ZSTD => OpKind::Zstd,
        }
    }
}

/// One `InstallOperation`: what to write where, and from what.
#[derive(Clone, Debug)]
pub struct Operation {
    /// The operation type.
    pub kind: OpKind,
    /// Offset of the blob relative to the start of the data section.
    pub data_offset: u64,
    /// Length of the blob in bytes (0 without one).
    pub data_length: u64,
    /// SHA-256 of the blob (`data_sha256_hash`).
    pub data_sha256: Option<[u8; 32]>,
    /// Source slot blocks the operation reads.
    pub src_extents: Vec<Extent>,
    /// SHA-256 of the source blocks read, in extent order (`src_sha256_hash`).
    pub src_sha256: Option<[u8; 32]>,
    /// Target slot blocks the operation writes.
    pub dst_extents: Vec<Extent>,
}

impl Operation {
    /// Bytes written: the destination extents' total length.
    pub fn dst_bytes(&self) -> u64 {
        self.dst_extents.iter().map(Extent::byte_len).sum()
    }
    /// Bytes read from the source slot: the source extents' total length.
    pub fn src_bytes(&self) -> u64 {
        self.src_extents.iter().map(Extent::byte_len).sum()
    }
}

/// A partition image's size and SHA-256 (`PartitionInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole image.
    pub hash: [u8; 32],
}

/// Where dm-verity metadata goes, for the device to compute (minor version 6 and later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionVerity {
    /// The blocks the hash tree covers.
    pub hash_tree_data: Extent,
    /// Where the hash tree goes.
    pub hash_tree: Extent,
    /// `hash_tree_algorithm`, parsed: an unknown name is refused with the manifest.
    pub algorithm: HashAlgorithm,
    /// The salt, hashed before each block.
    pub salt: Vec<u8>,
    /// The FEC to compute, when the partition has FEC.
    pub fec: Option<FecLayout>,
}

/// Where the device computes a partition's FEC (Reed-Solomon) data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FecLayout {
    /// The blocks the FEC covers (the data and the hash tree).
    pub data: Extent,
    /// Where the FEC goes.
    pub fec: Extent,
    /// Reed-Solomon parity bytes per 255-byte codeword (`fec_roots`).
    pub roots: u32,
}

/// One partition to update (`PartitionUpdate`).
#[derive(Clone, Debug)]
pub struct Partition {
    /// The partition's name without a slot suffix (`system`, `boot`).
    pub name: String,
    /// The source image (delta payloads only).
    pub old_info: Option<PartitionInfo>,
    /// The image after the update.
    pub new_info: PartitionInfo,
    /// The operations, in order.
    pub operations: Vec<Operation>,
    /// The verity metadata to compute after the operations (minor version 6 and later).
    pub verity: Option<PartitionVerity>,
    /// The partition's build version (`version`), for downgrade checks.
    pub version: Option<String>,
    /// The program to run from the new partition before the slot switch, when the manifest
    /// sets `run_postinstall`.
    pub postinstall: Option<Postinstall>,
    /// What the generator planned for a Virtual A/B snapshot update of this partition.
    pub cow: CowPlan,
}

/// A partition's Virtual A/B fields: the merge sequence and the COW size estimates. This engine
/// writes the target slot directly and does not use them to apply; they are kept for
/// inspection and for snapshot-based engines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CowPlan {
    /// `merge_operations`, in merge order.
    pub merge_operations: Vec<MergeOperation>,
    /// `estimate_cow_size`: bytes of COW the generator expects this partition to need.
    pub estimate_cow_size: Option<u64>,
    /// `estimate_op_count_max`: the most COW operations it expects.
    pub estimate_op_count_max: Option<u64>,
}

/// One `CowMergeOperation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeOperation {
    /// The merge operation type.
    pub kind: MergeKind,
    /// The source blocks.
    pub src: Extent,
    /// The destination blocks.
    pub dst: Extent,
    /// Byte offset into the source for COW_XOR (below one block).
    pub src_offset: u32,
}

/// A `CowMergeOperation.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeKind {
    /// `COW_COPY`: `dst` is a copy of `src`.
    Copy,
    /// `COW_XOR`: `dst` is `src` (at `src_offset`) XOR the data written.
    Xor,
    /// `COW_REPLACE`: `dst` is written whole.
    Replace,
}

impl MergeKind {
    /// The AOSP name, e.g. `COW_COPY`.
    pub fn name(self) -> &'static str {
        match self {
            MergeKind::Copy => "COW_COPY",
            MergeKind::Xor => "COW_XOR",
            MergeKind::Replace => "COW_REPLACE",
        }
    }
}

/// One `ApexInfo`: a (compressed) APEX the target build carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApexInfo {
    /// The APEX's package name.
    pub package_name: String,
    /// Its version code.
    pub version: i64,
    /// Whether it is compressed (a `.capex`).
    pub is_compressed: bool,
    /// Its size decompressed, in bytes.
    pub decompressed_size: i64,
}

/// A partition's postinstall step (`run_postinstall`, `postinstall_path`, `filesystem_type`,
/// `postinstall_optional`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Postinstall {
    /// Relative to the partition's root; `postinst` when the manifest names none, as
    /// update_engine's `kPostinstallDefaultScript`. Checked: relative, no `..`, no control
    /// characters.
    pub path: String,
    /// The file system to mount it as (`ext4`, `erofs`, ...); empty: try update_engine's
    /// list (ext2, ext3, ext4, squashfs, erofs).
    pub filesystem_type: String,
    /// A failure is logged and the update goes on.
    pub optional: bool,
}

/// update_engine's default postinstall program (`kPostinstallDefaultScript`).
pub const DEFAULT_POSTINSTALL_PATH: &str = "postinst";

impl Partition {
    /// Blocks in the new image.
    pub fn new_blocks(&self) -> u64 {
        self.new_info.size / BLOCK_SIZE
    }
}

/// A parsed, validated `DeltaArchiveManifest`.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The payload's minor version (0 for a full payload, at most `MAX_MINOR_VERSION`).
    pub minor_version: u32,
    /// The partitions to update, in manifest order.
    pub partitions: Vec<Partition>,
    /// Offset and size of the payload signature blob, relative to the data section.
    pub signatures: Option<(u64, u64)>,
    /// Total length of all operation blobs (the data section before the signature).
    pub blobs_size: u64,
    /// `max_timestamp`: the target build's time (seconds since the epoch); a running build newer
    /// than this makes the update a downgrade.
    pub max_timestamp: i64,
    /// `partial_update`: the payload updates only some partitions.
    pub partial_update: bool,
    /// The target's `security_patch_level` (`YYYY-MM-DD`), when set.
    pub security_patch_level: Option<String>,
    /// The target build's dynamic partitions (`dynamic_partition_metadata`), when it has any
    /// groups: update_engine's `is_target_dynamic`.
    pub dynamic: Option<DynamicPartitions>,
    /// `apex_info`: compressed APEXes and their decompressed sizes.
    pub apex_info: Vec<ApexInfo>,
}

/// The manifest's `dynamic_partition_metadata`: how the target slot's part of `super` is laid
/// out, and the Virtual A/B compression settings (only snapshot updates use those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicPartitions {
    /// The groups, in manifest order.
    pub groups: Vec<DynamicGroup>,
    /// The target build supports Virtual A/B snapshots (`snapshot_enabled`).
    pub snapshot_enabled: bool,
    /// The Virtual A/B compression settings.
    pub vabc: Vabc,
}

/// The Virtual A/B compression fields of `dynamic_partition_metadata`. A build made with
/// `--disable_vabc` says so by `vabc_enabled` false; there is no separate manifest field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vabc {
    /// `vabc_enabled`: the update may use compressed snapshots.
    pub enabled: bool,
    /// `vabc_compression_param`: the COW compressor ("gz", "brotli", "lz4", "zstd", "none").
    pub compression_param: Option<String>,
    /// `cow_version`: the COW format's major version.
    pub cow_version: Option<u32>,
    /// `vabc_feature_set.threaded`.
    pub threaded: bool,
    /// `vabc_feature_set.batch_writes`.
    pub batch_writes: bool,
    /// `compression_factor`: the COW compression block size in bytes.
    pub compression_factor: Option<u64>,
}

impl Vabc {
    /// Compressed snapshots as Cuttlefish takes them on Android 15: COW v3, lz4, 64 KiB
    /// (device/google/cuttlefish `shared/device.mk`, android-15.0.0_r1:
    /// `PRODUCT_VIRTUAL_AB_COMPRESSION_METHOD := lz4`, `PRODUCT_VIRTUAL_AB_COW_VERSION := 3`,
    /// `PRODUCT_VIRTUAL_AB_COMPRESSION_FACTOR := 65536`).
    pub fn cuttlefish_android15() -> Vabc {
        Vabc {
            enabled: true,
            compression_param: Some("lz4".into()),
            cow_version: Some(3),
            compression_factor: Some(65536),
            ..Vabc::default()
        }
    }
}

/// One group of logical partitions: `<name>_<slot>` in the target metadata, at most `size`
/// bytes (0: unlimited, as in liblp), holding `<partition>_<slot>` for each partition named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicGroup {
    /// The group's name without a slot suffix.
    pub name: String,
    /// The most bytes its partitions may take together (0: no limit).
    pub size: u64,
    /// The partitions it holds, without slot suffixes.
    pub partitions: Vec<String>,
}

impl DynamicPartitions {
    /// The group `partition` belongs to.
    pub fn group_of(&self, partition: &str) -> Option<&DynamicGroup> {
        self.groups
            .iter()
            .find(|g| g.partitions.iter().any(|p| p == partition))
    }
}

impl Manifest {
    /// Parses and validates a manifest. `data_size`, when known, is the number of payload bytes
    /// after the metadata signature: every blob and the signature must fit in it.
    pub fn parse(bytes: &[u8], data_size: Option<u64>) -> Result<Self> {
        super::decode_cost::check(bytes, super::decode_cost::Kind::Manifest)?;
        let m = pb::DeltaArchiveManifest::parse_from_bytes(bytes)
            .map_err(|e| err!(MalformedPayload, "manifest is not a valid protobuf: {e}"))?;
        Self::from_proto(&m, data_size)
    }

    /// Converts and validates an already decoded manifest; see `parse`.
    pub fn from_proto(m: &pb::DeltaArchiveManifest, data_size: Option<u64>) -> Result<Self> {
        if u64::from(m.block_size()) != BLOCK_SIZE {
            bail!(
                MalformedPayload,
                "block size {} is not {BLOCK_SIZE}",
                m.block_size()
            );
        }
        let minor_version = m.minor_version();
        if minor_version > MAX_MINOR_VERSION {
            bail!(
                Unsupported,
                "payload minor version {minor_version} is newer than supported"
            );
        }
        if m.partitions.is_empty() {
            bail!(MalformedPayload, "manifest has no partitions");
        }
        if m.partitions.len() > MAX_PARTITIONS {
            bail!(
                MalformedPayload,
                "{} partitions exceed the limit of {MAX_PARTITIONS}",
                m.partitions.len()
            );
        }
        let total_ops: usize = m.partitions.iter().map(|p| p.operations.len()).sum();
        if total_ops > MAX_OPERATIONS {
            bail!(
                MalformedPayload,
                "{total_ops} operations exceed the limit of {MAX_OPERATIONS}"
            );
        }
        let is_delta =
            m.partial_update() || m.partitions.iter().any(|p| p.old_partition_info.is_some());
        if is_delta && minor_version == 0 {
            bail!(MalformedPayload, "delta payload with minor version 0");
        }

        let mut names = HashSet::new();
        let mut next_blob = 0u64;
        let mut partitions = Vec::with_capacity(m.partitions.len());
        for p in &m.partitions {
            let part = parse_partition(p, minor_version, &mut next_blob)?;
            if !names.insert(part.name.clone()) {
                bail!(MalformedPayload, "partition {} appears twice", part.name);
            }
            partitions.push(part);
        }
        // Progress and verification add the partitions' sizes up; each is the payload's claim.
        if partitions
            .iter()
            .try_fold(0u64, |sum, p| sum.checked_add(p.new_info.size))
            .is_none()
        {
            bail!(
                MalformedPayload,
                "the partitions' sizes add up to more than 2^64 bytes"
            );
        }

        let signatures = match (m.has_signatures_offset(), m.has_signatures_size()) {
            (true, true) => {
                let (offset, size) = (m.signatures_offset(), m.signatures_size());
                if offset != next_blob {
                    bail!(
                        MalformedPayload,
                        "signature blob at {offset} is not right after the last blob ({next_blob})"
                    );
                }
                if size == 0 || size > 1 << 20 {
                    bail!(MalformedPayload, "signature blob size {size} out of range");
                }
                Some((offset, size))
            }
            (false, false) => None,
            _ => bail!(
                MalformedPayload,
                "only one of signatures_offset and signatures_size is set"
            ),
        };
        if let Some(data_size) = data_size {
            // Both terms are bounded (operations × MAX_OP_BYTES, 1 MiB): this cannot overflow.
            let end = signatures.map_or(next_blob, |(o, s)| o.saturating_add(s));
            // A payload cut short fails as a stream that ends early does: with a size error.
            if end > data_size {
                bail!(
                    SizeMismatch,
                    "blobs end at data offset {end}, beyond the payload's {data_size} data bytes"
                );
            }
        }

        Ok(Manifest {
            minor_version,
            partitions,
            signatures,
            blobs_size: next_blob,
            max_timestamp: m.max_timestamp(),
            partial_update: m.partial_update(),
            security_patch_level: m.security_patch_level.clone().filter(|s| !s.is_empty()),
            dynamic: parse_dynamic(m, &names)?,
            apex_info: m
                .apex_info
                .iter()
                .map(|a| ApexInfo {
                    package_name: a.package_name().to_owned(),
                    version: a.version(),
                    is_compressed: a.is_compressed(),
                    decompressed_size: a.decompressed_size(),
                })
                .collect(),
        })
    }

    /// Whether this is a delta payload: a partial update, or one with a source image.
    pub fn is_delta(&self) -> bool {
        self.partial_update || self.partitions.iter().any(|p| p.old_info.is_some())
    }

    /// The number of operations in all partitions.
    pub fn operation_count(&self) -> usize {
        self.partitions.iter().map(|p| p.operations.len()).sum()
    }

    /// Fails with 24 unless every operation that carries data has its `data_sha256_hash` and
    /// every one that reads the source slot has its `src_sha256_hash`. Required whenever
    /// payloads are signed (update_engine's `hash_checks_mandatory`, which its
    /// `ValidateOperationHash` enforces per operation with `kDownloadOperationHashMissingError`):
    /// the hashes are what makes the signed metadata cover each blob before it reaches a
    /// decompressor, and each source read before it reaches a patcher, while the payload
    /// signature is only checked after the last blob.
    pub fn check_hashes(&self) -> Result<()> {
        for p in &self.partitions {
            for (i, op) in p.operations.iter().enumerate() {
                let missing = if op.data_length > 0 && op.data_sha256.is_none() {
                    "data_sha256_hash"
                } else if op.kind.reads_source() && op.src_sha256.is_none() {
                    "src_sha256_hash"
                } else {
                    continue;
                };
                bail!(
                    PayloadHash,
                    "partition {}, operation {i}: {} has no {missing}, which signed payloads must carry",
                    p.name,
                    op.kind.name()
                );
            }
        }
        Ok(())
    }

    /// Fails with 32 when any operation is of a type this engine cannot apply.
    pub fn check_supported(&self) -> Result<()> {
        for p in &self.partitions {
            for (i, op) in p.operations.iter().enumerate() {
                if !op.kind.is_supported() {
                    bail!(
                        Unsupported,
                        "unsupported operation {} (partition {}, operation {i})",
                        op.kind.name(),
                        p.name
                    );
                }
            }
        }
        Ok(())
    }
}

/// Group names become `<name>_<slot>` in 36-byte liblp names; every partition a group lists
/// must be in the payload (update_engine refuses the same: "not part of the manifest") and in
/// one group only.
fn parse_dynamic(
    m: &pb::DeltaArchiveManifest,
    payload_partitions: &HashSet<String>,
) -> Result<Option<DynamicPartitions>> {
    let Some(d) = m.dynamic_partition_metadata.as_ref() else {
        return Ok(None);
    };
    if d.groups.is_empty() {
        return Ok(None);
    }
    if d.groups.len() > MAX_PARTITIONS {
        bail!(
            MalformedPayload,
            "{} dynamic partition groups exceed the limit of {MAX_PARTITIONS}",
            d.groups.len()
        );
    }
    let mut group_names = HashSet::new();
    let mut grouped = HashSet::new();
    let mut groups = Vec::with_capacity(d.groups.len());
    for g in &d.groups {
        let name = g.name().to_owned();
        check_name(&name)
            .map_err(|e| err!(MalformedPayload, "dynamic partition group: {}", e.message))?;
        // "<group>_<slot>" must fit liblp's 36-byte name field with its terminator.
        if name.len() > LP_NAME_MAX - 2 || name == "default" || name == "cow" {
            bail!(
                MalformedPayload,
                "dynamic partition group name {name:?} is reserved or too long"
            );
        }
        if !group_names.insert(name.clone()) {
            bail!(
                MalformedPayload,
                "dynamic partition group {name} appears twice"
            );
        }
        let mut partitions = Vec::with_capacity(g.partition_names.len());
        for p in &g.partition_names {
            if !payload_partitions.contains(p) {
                bail!(
                    MalformedPayload,
                    "dynamic partition group {name} lists {p:?}, which the payload does not carry"
                );
            }
            if p.len() > LP_NAME_MAX - 2 {
                bail!(MalformedPayload, "logical partition name {p:?} is too long");
            }
            if !grouped.insert(p.clone()) {
                bail!(
                    MalformedPayload,
                    "partition {p} is in two dynamic partition groups"
                );
            }
            partitions.push(p.clone());
        }
        groups.push(DynamicGroup {
            name,
            size: g.size(),
            partitions,
        });
    }
    let features = d.vabc_feature_set.as_ref();
    Ok(Some(DynamicPartitions {
        groups,
        snapshot_enabled: d.snapshot_enabled(),
        vabc: Vabc {
            enabled: d.vabc_enabled(),
            compression_param: d.vabc_compression_param.clone().filter(|s| !s.is_empty()),
            cow_version: d.cow_version,
            threaded: features.is_some_and(|f| f.threaded()),
            batch_writes: features.is_some_and(|f| f.batch_writes()),
            compression_factor: d.compression_factor,
        },
    }))
}

fn parse_partition(p: &pb::PartitionUpdate, minor: u32, next_blob: &mut u64) -> Result<Partition> {
    let name = p.partition_name().to_owned();
    check_name(&name)?;
    let new_info = p.new_partition_info.as_ref().ok_or_else(|| {
        err!(
            MalformedPayload,
            "partition {name} has no new_partition_info"
        )
    })?;
    let new_info = parse_info(&name, "new", new_info)?;
    let old_info = match p.old_partition_info.as_ref() {
        Some(info) if info.has_size() || info.has_hash() => Some(parse_info(&name, "old", info)?),
        _ => None,
    };
    let new_blocks = new_info.size / BLOCK_SIZE;
    let old_blocks = old_info.as_ref().map(|i| i.size / BLOCK_SIZE);

    let mut operations = Vec::with_capacity(p.operations.len());
    for (i, op) in p.operations.iter().enumerate() {
        let at = || format!("partition {name}, operation {i}");
        let op = parse_operation(op, new_blocks, old_blocks, minor, next_blob)
            .map_err(|e| Error::new(e.code, format!("{}: {}", at(), e.message)))?;
        operations.push(op);
    }
    let verity = if minor >= VERITY_MINOR_VERSION {
        parse_verity(p, new_blocks)?
    } else {
        None
    };
    let postinstall = parse_postinstall(&name, p)?;
    let cow = parse_cow_plan(
        p,
        &name,
        new_blocks,
        old_blocks.unwrap_or(u64::MAX / BLOCK_SIZE),
    )?;
    Ok(Partition {
        name,
        old_info,
        new_info,
        operations,
        verity,
        version: p.version.clone().filter(|v| !v.is_empty()),
        postinstall,
        cow,
    })
}

/// The Virtual A/B fields: merge operations name target blocks (`dst`) and the source slot's
/// blocks they come from (`src`), which must lie within the partitions.
fn parse_cow_plan(
    p: &pb::PartitionUpdate,
    name: &str,
    new_blocks: u64,
    old_blocks: u64,
) -> Result<CowPlan> {
    use pb::cow_merge_operation::Type as T;
    let mut merge_operations = Vec::with_capacity(p.merge_operations.len());
    for (i, m) in p.merge_operations.iter().enumerate() {
        let at = |e: Error| {
            Error::new(
                e.code,
                format!("partition {name}, merge operation {i}: {}", e.message),
            )
        };
        let kind = match m.type_() {
            T::COW_COPY => MergeKind::Copy,
            T::COW_XOR => MergeKind::Xor,
            T::COW_REPLACE => MergeKind::Replace,
        };
        let missing = || err!(MalformedPayload, "extent missing");
        let dst = parse_extent(
            m.dst_extent.as_ref().ok_or_else(missing).map_err(at)?,
            new_blocks,
            "merge destination",
        )
        .map_err(at)?;
        let src = match m.src_extent.as_ref() {
            Some(e) => parse_extent(e, old_blocks, "merge source").map_err(at)?,
            // COW_REPLACE has no source.
            None if kind == MergeKind::Replace => Extent {
                start_block: 0,
                num_blocks: 0,
            },
            None => return Err(at(missing())),
        };
        if u64::from(m.src_offset()) >= BLOCK_SIZE {
            return Err(at(err!(
                MalformedPayload,
                "src_offset {} is not below a block",
                m.src_offset()
            )));
        }
        merge_operations.push(MergeOperation {
            kind,
            src,
            dst,
            src_offset: m.src_offset(),
        });
    }
    Ok(CowPlan {
        merge_operations,
        estimate_cow_size: p.estimate_cow_size,
        estimate_op_count_max: p.estimate_op_count_max,
    })
}

/// The postinstall step of `p`, refused (21) before anything is written when its path could
/// leave the mounted partition or its file system type is not a plain name.
fn parse_postinstall(name: &str, p: &pb::PartitionUpdate) -> Result<Option<Postinstall>> {
    if !p.run_postinstall() {
        return Ok(None);
    }
    let path = match p.postinstall_path() {
        "" => DEFAULT_POSTINSTALL_PATH,
        path => path,
    };
    let path_ok = path.len() <= 255
        && !path.starts_with('/')
        && !path.chars().any(char::is_control)
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..");
    if !path_ok {
        bail!(
            MalformedPayload,
            "partition {name}: postinstall_path {} is not a relative path inside the partition",
            crate::error::shown(path)
        );
    }
    let fs = p.filesystem_type();
    if fs.len() > 16
        || !fs
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        bail!(
            MalformedPayload,
            "partition {name}: filesystem_type {} is not a file system name",
            crate::error::shown(fs)
        );
    }
    Ok(Some(Postinstall {
        path: path.to_owned(),
        filesystem_type: fs.to_owned(),
        optional: p.postinstall_optional(),
    }))
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !ok {
        bail!(
            MalformedPayload,
            "partition name {} is not [a-z0-9_]{{1,{MAX_NAME_LEN}}}",
            crate::error::shown(name)
        );
    }
    Ok(())
}

fn parse_info(name: &str, which: &str, info: &pb::PartitionInfo) -> Result<PartitionInfo> {
    let size = info.size();
    if size % BLOCK_SIZE != 0 {
        bail!(
            MalformedPayload,
            "partition {name}: {which} size {size} is not a multiple of {BLOCK_SIZE}"
        );
    }
    let hash = info.hash().try_into().map_err(|_| {
        err!(
            MalformedPayload,
            "partition {name}: {which} hash is {} bytes, not 32",
            info.hash().len()
        )
    })?;
    Ok(PartitionInfo { size, hash })
}

fn parse_operation(
    op: &pb::InstallOperation,
    new_blocks: u64,
    old_blocks: Option<u64>,
    minor: u32,
    next_blob: &mut u64,
) -> Result<Operation> {
    let kind = match op.type_ {
        Some(t) => match t.enum_value() {
            Ok(t) => OpKind::from_proto(t),
            Err(n) => bail!(Unsupported, "unknown operation type {n}"),
        },
        None => bail!(MalformedPayload, "operation without a type"),
    };
    if minor == 0 && kind.reads_source() {
        bail!(MalformedPayload, "{} in a full payload", kind.name());
    }
    let dst_extents = parse_extents(&op.dst_extents, new_blocks, "dst")?;
    if dst_extents.is_empty() {
        bail!(
            MalformedPayload,
            "{} without destination extents",
            kind.name()
        );
    }
    let src_extents = match old_blocks {
        Some(limit) => parse_extents(&op.src_extents, limit, "src")?,
        None => parse_extents(&op.src_extents, u64::MAX / BLOCK_SIZE, "src")?,
    };
    if kind.reads_source() && src_extents.is_empty() {
        bail!(MalformedPayload, "{} without source extents", kind.name());
    }
    // Each extent fits the partition, but their sum need not fit a u64: add with a limit.
    let (Some(dst_bytes), Some(src_bytes)) = (op_bytes(&dst_extents), op_bytes(&src_extents))
    else {
        bail!(
            MalformedPayload,
            "operation covers more than {MAX_OP_BYTES} bytes"
        );
    };
    if kind == OpKind::SourceCopy && src_bytes != dst_bytes {
        bail!(
            MalformedPayload,
            "SOURCE_COPY of {src_bytes} bytes into {dst_bytes}"
        );
    }

    let (data_offset, data_length) = (op.data_offset(), op.data_length());
    if kind.has_blob() {
        if data_length == 0 {
            bail!(MalformedPayload, "{} without data", kind.name());
        }
        if data_length > MAX_OP_BYTES {
            bail!(
                MalformedPayload,
                "blob of {data_length} bytes exceeds {MAX_OP_BYTES}"
            );
        }
        if data_offset != *next_blob {
            bail!(
                MalformedPayload,
                "blob at {data_offset} is not contiguous (expected {next_blob})"
            );
        }
        if kind == OpKind::Replace && data_length != dst_bytes {
            bail!(
                MalformedPayload,
                "REPLACE of {data_length} bytes into {dst_bytes}"
            );
        }
        *next_blob = next_blob
            .checked_add(data_length)
            .ok_or_else(|| err!(MalformedPayload, "blobs end past 2^64 bytes"))?;
    } else if data_length != 0 {
        bail!(
            MalformedPayload,
            "{} carries {data_length} bytes of data",
            kind.name()
        );
    }

    Ok(Operation {
        kind,
        data_offset,
        data_length,
        data_sha256: parse_hash(op.data_sha256_hash(), "data_sha256_hash")?,
        src_extents,
        src_sha256: parse_hash(op.src_sha256_hash(), "src_sha256_hash")?,
        dst_extents,
    })
}

/// The bytes `extents` cover, `None` past [`MAX_OP_BYTES`].
fn op_bytes(extents: &[Extent]) -> Option<u64> {
    extents
        .iter()
        .try_fold(0u64, |sum, e| sum.checked_add(e.byte_len()))
        .filter(|&sum| sum <= MAX_OP_BYTES)
}

fn parse_extents(extents: &[pb::Extent], limit_blocks: u64, which: &str) -> Result<Vec<Extent>> {
    if extents.len() > MAX_EXTENTS_PER_OP {
        bail!(
            MalformedPayload,
            "{} {which} extents exceed {MAX_EXTENTS_PER_OP}",
            extents.len()
        );
    }
    extents
        .iter()
        .map(|e| parse_extent(e, limit_blocks, which))
        .collect()
}

fn parse_extent(e: &pb::Extent, limit_blocks: u64, which: &str) -> Result<Extent> {
    let (start, num) = (e.start_block(), e.num_blocks());
    if num == 0 {
        bail!(MalformedPayload, "empty {which} extent at block {start}");
    }
    // `start_block == u64::MAX` is AOSP's sparse hole, only meaningful for the obsolete in-place
    // operations; here it is simply out of range.
    match start.checked_add(num) {
        Some(end) if end <= limit_blocks => Ok(Extent {
            start_block: start,
            num_blocks: num,
        }),
        _ => bail!(
            MalformedPayload,
            "{which} extent {start}+{num} outside the partition's {limit_blocks} blocks"
        ),
    }
}

fn parse_hash(bytes: &[u8], which: &str) -> Result<Option<[u8; 32]>> {
    match bytes.len() {
        0 => Ok(None),
        32 => Ok(bytes.try_into().ok()),
        n => bail!(MalformedPayload, "{which} is {n} bytes, not 32"),
    }
}

fn parse_verity(p: &pb::PartitionUpdate, new_blocks: u64) -> Result<Option<PartitionVerity>> {
    let name = p.partition_name();
    let extent = |e: &protobuf::MessageField<pb::Extent>, which: &str| -> Result<Option<Extent>> {
        match e.as_ref() {
            Some(e) if e.num_blocks() > 0 => parse_extent(e, new_blocks, which)
                .map(Some)
                .map_err(|err| err!(MalformedPayload, "partition {name}: {}", err.message)),
            _ => Ok(None),
        }
    };
    let Some(hash_tree) = extent(&p.hash_tree_extent, "hash_tree")? else {
        return Ok(None);
    };
    let Some(hash_tree_data) = extent(&p.hash_tree_data_extent, "hash_tree_data")? else {
        bail!(
            MalformedPayload,
            "partition {name}: hash tree without hash_tree_data_extent"
        );
    };
    let fec = match extent(&p.fec_extent, "fec")? {
        Some(fec) => {
            let Some(data) = extent(&p.fec_data_extent, "fec_data")? else {
                bail!(
                    MalformedPayload,
                    "partition {name}: FEC without fec_data_extent"
                );
            };
            Some(FecLayout {
                data,
                fec,
                roots: p.fec_roots(),
            })
        }
        None => None,
    };
    let algorithm = HashAlgorithm::from_name(p.hash_tree_algorithm())
        .map_err(|e| err!(MalformedPayload, "partition {name}: {}", e.message))?;
    Ok(Some(PartitionVerity {
        hash_tree_data,
        hash_tree,
        algorithm,
        salt: p.hash_tree_salt().to_vec(),
        fec,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;
    use pb::install_operation::Type;

    fn extent(start: u64, num: u64) -> pb::Extent {
        let mut e = pb::Extent::new();
        e.set_start_block(start);
        e.set_num_blocks(num);
        e
    }

    /// A full payload's manifest: one `ZERO` operation per partition, over `dst`.
    fn manifest(sizes: &[u64], dst: &[pb::Extent], src: &[pb::Extent]) -> pb::DeltaArchiveManifest {
        let mut m = pb::DeltaArchiveManifest::new();
        m.set_block_size(BLOCK_SIZE as u32);
        m.set_minor_version(0);
        for (i, &size) in sizes.iter().enumerate() {
            let mut p = pb::PartitionUpdate::new();
            p.set_partition_name(format!("p{i}"));
            let mut info = pb::PartitionInfo::new();
            info.set_size(size);
            info.set_hash(vec![0; 32]);
            p.new_partition_info = Some(info).into();
            let mut op = pb::InstallOperation::new();
            op.set_type(Type::ZERO);
            op.dst_extents = dst.to_vec();
            op.src_extents = src.to_vec();
            p.operations.push(op);
            m.partitions.push(p);
        }
        m
    }

    fn code(m: &pb::DeltaArchiveManifest) -> Option<ErrorCode> {
        Manifest::from_proto(m, None).err().map(|e| e.code)
    }

    /// The largest partition a u64 byte size allows, in blocks.
    const MAX_BLOCKS: u64 = u64::MAX / BLOCK_SIZE;

    #[test]
    fn extent_sums_past_u64_are_refused() {
        // Each extent fits the partition; together (overlapping) they cover 2^64 bytes.
        let half = 1u64 << 51;
        let huge = [extent(0, half), extent(1, half)];
        let size = MAX_BLOCKS * BLOCK_SIZE;
        assert_eq!(
            code(&manifest(&[size], &huge, &[])),
            Some(ErrorCode::MalformedPayload)
        );
        // Source extents of an operation that reads none, in a payload without old sizes.
        assert_eq!(
            code(&manifest(&[size], &[extent(0, 1)], &huge)),
            Some(ErrorCode::MalformedPayload)
        );
        assert_eq!(code(&manifest(&[size], &[extent(0, 1)], &[])), None);
    }

    #[test]
    fn bad_names_are_not_echoed() {
        let mut m = manifest(&[4096], &[extent(0, 1)], &[]);
        let name = format!("\x1b]0;owned\x07{}", "A".repeat(5000));
        m.partitions[0].set_partition_name(name);
        let e = Manifest::from_proto(&m, None).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        assert!(
            !e.message.contains('\x1b') && !e.message.contains('\x07'),
            "{e}"
        );
        assert!(
            e.message.len() < 200 && e.message.contains("5010 bytes"),
            "{e}"
        );
    }

    /// An unknown `hash_tree_algorithm` is a malformed payload (21) when the manifest is read,
    /// before anything is written, not a verity failure (42) after every operation.
    #[test]
    fn unknown_hash_tree_algorithm_is_refused_with_the_manifest() {
        let verity = |alg: &str| {
            let mut m = manifest(&[8 * BLOCK_SIZE], &[extent(0, 8)], &[]);
            m.set_minor_version(VERITY_MINOR_VERSION);
            let p = &mut m.partitions[0];
            p.hash_tree_data_extent = Some(extent(0, 7)).into();
            p.hash_tree_extent = Some(extent(7, 1)).into();
            p.set_hash_tree_algorithm(alg.to_owned());
            Manifest::from_proto(&m, None)
        };
        let parsed = verity("SHA256").unwrap();
        let layout = parsed.partitions[0].verity.as_ref().unwrap();
        assert_eq!(layout.algorithm, HashAlgorithm::Sha256);
        for bad in ["md5", "", "sha256 "] {
            let e = verity(bad).unwrap_err();
            assert_eq!(e.code, ErrorCode::MalformedPayload, "{bad:?}: {e}");
            assert!(e.message.contains("partition p0"), "{e}");
        }
    }

    #[test]
    fn partition_sizes_past_u64_are_refused() {
        let size = 1u64 << 63;
        assert_eq!(code(&manifest(&[size], &[extent(0, 1)], &[])), None);
        let e =
            Manifest::from_proto(&manifest(&[size, size], &[extent(0, 1)], &[]), None).unwrap_err();
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        assert!(e.message.contains("2^64"), "{e}");
    }

    #[test]
    fn newer_fields_are_kept_and_unknown_fields_ignored() {
        use protobuf::Message;
        let mut m = manifest(&[8 * BLOCK_SIZE], &[extent(0, 8)], &[]);
        let p = &mut m.partitions[0];
        p.set_estimate_cow_size(123_456);
        p.set_estimate_op_count_max(77);
        let mut merge = pb::CowMergeOperation::new();
        merge.set_type(pb::cow_merge_operation::Type::COW_XOR);
        merge.src_extent = Some(extent(1, 2)).into();
        merge.dst_extent = Some(extent(3, 2)).into();
        merge.set_src_offset(100);
        p.merge_operations.push(merge);
        // Fields from a newer update_metadata.proto than ours, in every message kind.
        p.mut_unknown_fields().add_varint(90, 1);
        p.operations[0]
            .mut_unknown_fields()
            .add_length_delimited(91, b"future".to_vec());
        m.mut_unknown_fields().add_fixed64(99, 5);
        let mut apex = pb::ApexInfo::new();
        apex.set_package_name("com.android.art".into());
        apex.set_version(340_000_000);
        apex.set_is_compressed(true);
        apex.set_decompressed_size(50 << 20);
        m.apex_info.push(apex);
        let d = m.dynamic_partition_metadata.mut_or_insert_default();
        let mut g = pb::DynamicPartitionGroup::new();
        g.set_name("main".into());
        g.set_size(1 << 30);
        g.partition_names.push("p0".into());
        d.groups.push(g);
        d.set_vabc_enabled(true);
        d.set_vabc_compression_param("lz4".into());
        d.set_cow_version(3);
        d.set_compression_factor(65536);
        d.vabc_feature_set
            .mut_or_insert_default()
            .set_threaded(true);
        d.mut_unknown_fields().add_varint(92, 7);

        let bytes = m.write_to_bytes().unwrap();
        let parsed = Manifest::parse(&bytes, None).unwrap();
        let cow = &parsed.partitions[0].cow;
        assert_eq!(cow.estimate_cow_size, Some(123_456));
        assert_eq!(cow.estimate_op_count_max, Some(77));
        assert_eq!(
            cow.merge_operations,
            [MergeOperation {
                kind: MergeKind::Xor,
                src: Extent {
                    start_block: 1,
                    num_blocks: 2
                },
                dst: Extent {
                    start_block: 3,
                    num_blocks: 2
                },
                src_offset: 100,
            }]
        );
        assert_eq!(parsed.apex_info.len(), 1);
        assert!(parsed.apex_info[0].is_compressed);
        let vabc = &parsed.dynamic.as_ref().unwrap().vabc;
        assert!(vabc.enabled && vabc.threaded && !vabc.batch_writes);
        assert_eq!(vabc.compression_param.as_deref(), Some("lz4"));
        assert_eq!(
            (vabc.cow_version, vabc.compression_factor),
            (Some(3), Some(65536))
        );

        // A merge operation outside the partition is refused like any other extent.
        m.partitions[0].merge_operations[0].dst_extent = Some(extent(7, 2)).into();
        assert_eq!(code(&m), Some(ErrorCode::MalformedPayload));
    }
}
