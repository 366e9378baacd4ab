//! `abupdate payload build`: full and delta payloads from partition images, signed, with
//! `payload_properties.txt`. A host tool (it reads and writes files), used by the demo, the
//! tests and the benchmarks.

pub mod avb_image;
pub mod merge_ops;
pub mod ops;
pub mod sample;
pub mod super_image;
pub mod verity;

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use protobuf::Message;

use crate::engine::hashing::{sha256, ResumableSha256};
use crate::error::{Error, Result};
use crate::payload::manifest::{DynamicGroup, DynamicPartitions, Postinstall};
use crate::payload::properties::PayloadProperties;
use crate::payload::proto::update_metadata as pb;
use crate::payload::signature::{encode_signatures, Signer};
use crate::payload::{Manifest, PayloadHeader, BLOCK_SIZE};
use crate::{bail, err};
use ops::{Compressors, GeneratedOp, CHUNK_BLOCKS};

/// Minor version of the deltas we make: SOURCE_COPY, BROTLI_BSDIFF, ZERO, src hashes, and the
/// verity fields (6), without PUFFDIFF/ZUCCHINI/LZ4DIFF.
pub const DELTA_MINOR_VERSION: u32 = 6;

/// One partition to put in a payload.
#[derive(Clone, Debug)]
pub struct PartitionSpec {
    /// The partition's name, without a slot suffix.
    pub name: String,
    /// The new image.
    pub new: PathBuf,
    /// The source image: present for a delta.
    pub old: Option<PathBuf>,
    /// For an image without an AVB hashtree footer: append a hash tree and FEC after its data
    /// (in a delta, the device computes them instead of receiving them).
    pub append_verity: bool,
}

impl PartitionSpec {
    /// Parses `NAME=NEW.img[:OLD.img]`.
    pub fn parse(arg: &str) -> Result<Self> {
        let Some((name, images)) = arg.split_once('=') else {
            bail!(
                MalformedPayload,
                "--partition {arg:?} is not NAME=NEW.img[:OLD.img]"
            );
        };
        let (new, old) = match images.split_once(':') {
            Some((new, old)) => (new, Some(PathBuf::from(old))),
            None => (images, None),
        };
        Ok(PartitionSpec {
            name: name.to_owned(),
            new: new.into(),
            old,
            append_verity: false,
        })
    }
}

/// How to build a payload.
pub struct BuildOptions {
    /// The OTA key to sign with; `None` makes an unsigned payload.
    pub signer: Option<Signer>,
    /// Which compressors REPLACE operations may use.
    pub compressors: Compressors,
    /// Threads compressing and diffing.
    pub threads: usize,
    /// The manifest's `max_timestamp` (seconds since the epoch), if set.
    pub max_timestamp: Option<i64>,
    /// The manifest's `security_patch_level` (`YYYY-MM-DD`), if set.
    pub security_patch_level: Option<String>,
    /// Every partition's `version` (AOSP: the build timestamp).
    pub partition_version: Option<String>,
    /// `dynamic_partition_metadata`: the target build's groups of logical partitions.
    pub dynamic: Option<DynamicPartitions>,
    /// `partial_update`: the payload carries only some partitions; the others stay as the
    /// running slot has them (a delta's minor version, as update_engine requires).
    pub partial_update: bool,
    /// Postinstall steps by partition name (`--postinstall PART=PATH[:FSTYPE][:optional]`).
    pub postinstall: Vec<(String, Postinstall)>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            signer: None,
            compressors: Compressors {
                xz: true,
                bzip2: true,
            },
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_timestamp: None,
            security_patch_level: None,
            partition_version: None,
            dynamic: None,
            partial_update: false,
            postinstall: Vec::new(),
        }
    }
}

/// Parses `PART=PATH[:FSTYPE][:optional]` (the `--postinstall` option): the manifest's
/// `run_postinstall`, `postinstall_path`, `filesystem_type` and `postinstall_optional`.
pub fn parse_postinstall(arg: &str) -> Result<(String, Postinstall)> {
    let bad = || {
        err!(
            MalformedPayload,
            "--postinstall {arg:?} is not PART=PATH[:FSTYPE][:optional]"
        )
    };
    let (name, rest) = arg.split_once('=').ok_or_else(bad)?;
    let mut fields = rest.split(':');
    let path = fields.next().filter(|p| !p.is_empty()).ok_or_else(bad)?;
    let mut step = Postinstall {
        path: path.to_owned(),
        filesystem_type: String::new(),
        optional: false,
    };
    for field in fields {
        match field {
            "optional" => step.optional = true,
            fs if step.filesystem_type.is_empty() && !fs.is_empty() => {
                step.filesystem_type = fs.to_owned()
            }
            _ => return Err(bad()),
        }
    }
    Ok((name.to_owned(), step))
}

/// Parses `NAME=SIZE:part,part` (the `--group` option, as `lpmake --group NAME:SIZE` plus the
/// partitions it holds): a dynamic partition group of at most SIZE bytes (0: unlimited).
pub fn parse_group(arg: &str) -> Result<DynamicGroup> {
    let bad = || {
        err!(
            MalformedPayload,
            "--group {arg:?} is not NAME=SIZE:partition,partition"
        )
    };
    let (name, rest) = arg.split_once('=').ok_or_else(bad)?;
    let (size, parts) = rest.split_once(':').unwrap_or((rest, ""));
    let size = size.parse::<u64>().map_err(|_| bad())?;
    let partitions = parts
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    Ok(DynamicGroup {
        name: name.to_owned(),
        size,
        partitions,
    })
}

/// What a build produced.
#[derive(Clone, Debug)]
pub struct BuildReport {
    /// The payload's `payload_properties.txt` values.
    pub properties: PayloadProperties,
    /// The manifest written.
    pub manifest: Manifest,
}

/// Builds a payload at `out`. Blobs go to a temporary file beside it first, since the
/// manifest (which precedes them) is only known once every operation is made.
pub fn build(specs: &[PartitionSpec], options: &BuildOptions, out: &Path) -> Result<BuildReport> {
    if specs.is_empty() {
        bail!(MalformedPayload, "no partitions to build");
    }
    if let Some((name, _)) = options
        .postinstall
        .iter()
        .find(|(n, _)| !specs.iter().any(|s| s.name == *n))
    {
        bail!(
            MalformedPayload,
            "--postinstall names {name}, which is not a --partition"
        );
    }
    let is_delta = options.partial_update || specs.iter().any(|s| s.old.is_some());
    let blobs_path = out.with_extension("blobs.tmp");
    let mut blobs = BlobFile::create(&blobs_path)?;
    let mut manifest = pb::DeltaArchiveManifest::new();
    manifest.set_block_size(BLOCK_SIZE as u32);
    manifest.set_minor_version(if is_delta { DELTA_MINOR_VERSION } else { 0 });
    if let Some(ts) = options.max_timestamp {
        manifest.set_max_timestamp(ts);
    }
    if let Some(spl) = &options.security_patch_level {
        manifest.set_security_patch_level(spl.clone());
    }
    if options.partial_update {
        manifest.set_partial_update(true);
    }
    if let Some(dynamic) = &options.dynamic {
        let meta = manifest.dynamic_partition_metadata.mut_or_insert_default();
        meta.set_snapshot_enabled(dynamic.snapshot_enabled);
        let v = &dynamic.vabc;
        if *v != Default::default() {
            meta.set_vabc_enabled(v.enabled);
            meta.vabc_compression_param = v.compression_param.clone();
            meta.cow_version = v.cow_version;
            meta.compression_factor = v.compression_factor;
            if v.threaded || v.batch_writes {
                let f = meta.vabc_feature_set.mut_or_insert_default();
                f.set_threaded(v.threaded);
                f.set_batch_writes(v.batch_writes);
            }
        }
        for g in &dynamic.groups {
            let mut group = pb::DynamicPartitionGroup::new();
            group.set_name(g.name.clone());
            group.set_size(g.size);
            group.partition_names = g.partitions.clone();
            meta.groups.push(group);
        }
    }
    // A Virtual A/B payload's delta partitions in a dynamic group get merge operations.
    let snapshot_group = |name: &str| {
        options.dynamic.as_ref().is_some_and(|d| {
            d.snapshot_enabled
                && d.vabc.enabled
                && d.groups
                    .iter()
                    .any(|g| g.partitions.iter().any(|p| p == name))
        })
    };
    for spec in specs {
        let mut part = build_partition(spec, options, &mut blobs)?;
        if spec.old.is_some() && snapshot_group(&spec.name) {
            part.merge_operations = part
                .operations
                .iter()
                .flat_map(merge_ops::merge_operations)
                .collect();
        }
        if let Some(v) = &options.partition_version {
            part.set_version(v.clone());
        }
        if let Some((_, step)) = options.postinstall.iter().find(|(n, _)| *n == spec.name) {
            part.set_run_postinstall(true);
            part.set_postinstall_path(step.path.clone());
            if !step.filesystem_type.is_empty() {
                part.set_filesystem_type(step.filesystem_type.clone());
            }
            part.set_postinstall_optional(step.optional);
        }
        manifest.partitions.push(part);
    }
    let result = assemble(manifest, options, &mut blobs, out);
    let _ = std::fs::remove_file(&blobs_path);
    result
}

fn build_partition(
    spec: &PartitionSpec,
    options: &BuildOptions,
    blobs: &mut BlobFile,
) -> Result<pb::PartitionUpdate> {
    let mut part = pb::PartitionUpdate::new();
    part.set_partition_name(spec.name.clone());
    let mut new_hash = ResumableSha256::new();
    let new_size = match &spec.old {
        Some(old_path) => {
            let old = read_image(old_path)?;
            let mut new = read_image(&spec.new)?;
            let layout = match spec.append_verity {
                true => Some(verity::append(&mut new)?),
                false => verity::from_footer(&spec.name, &new)?,
            };
            let skip = layout
                .as_ref()
                .map(verity::computed_extents)
                .unwrap_or_default();
            if let Some(layout) = &layout {
                set_verity(&mut part, layout);
            }
            new_hash.update(&new);
            for op in ops::delta(&old, &new, &skip, options.compressors)? {
                part.operations.push(blobs.add(op)?);
            }
            let mut info = pb::PartitionInfo::new();
            info.set_size(old.len() as u64);
            info.set_hash(sha256(&old).to_vec());
            part.old_partition_info = Some(info).into();
            new.len() as u64
        }
        None => {
            // A full payload ships every block, the verity ones included, as AOSP's does.
            let mut reader: Box<dyn Read> = match spec.append_verity {
                true => {
                    let mut new = read_image(&spec.new)?;
                    verity::append(&mut new)?;
                    Box::new(std::io::Cursor::new(new))
                }
                false => {
                    image_size(&spec.new)?;
                    Box::new(open(&spec.new)?)
                }
            };
            let chunk = (CHUNK_BLOCKS * BLOCK_SIZE) as usize;
            let batch = options.threads.max(1) * 2;
            let mut block = 0u64;
            loop {
                let mut chunks = Vec::with_capacity(batch);
                for _ in 0..batch {
                    let mut buf = vec![0u8; chunk];
                    let n = read_full(&mut reader, &mut buf, &spec.new)?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    new_hash.update(&buf);
                    chunks.push((block, buf));
                    block += (n as u64) / BLOCK_SIZE;
                }
                if chunks.is_empty() {
                    break;
                }
                for op in compress_parallel(&chunks, options)? {
                    part.operations.push(blobs.add(op)?);
                }
            }
            block * BLOCK_SIZE
        }
    };
    let mut info = pb::PartitionInfo::new();
    info.set_size(new_size);
    info.set_hash(new_hash.finish().to_vec());
    part.new_partition_info = Some(info).into();
    Ok(part)
}

fn set_verity(part: &mut pb::PartitionUpdate, layout: &crate::payload::manifest::PartitionVerity) {
    part.hash_tree_data_extent = Some(extent(&layout.hash_tree_data)).into();
    part.hash_tree_extent = Some(extent(&layout.hash_tree)).into();
    part.set_hash_tree_algorithm(layout.algorithm.name().to_owned());
    part.set_hash_tree_salt(layout.salt.clone());
    if let Some(fec) = &layout.fec {
        part.fec_data_extent = Some(extent(&fec.data)).into();
        part.fec_extent = Some(extent(&fec.fec)).into();
        part.set_fec_roots(fec.roots);
    }
}

/// Compresses a batch of chunks on `threads` threads, results in chunk order.
fn compress_parallel(
    chunks: &[(u64, Vec<u8>)],
    options: &BuildOptions,
) -> Result<Vec<GeneratedOp>> {
    let threads = options.threads.max(1);
    let per_thread = chunks.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .chunks(per_thread.max(1))
            .map(|group| {
                s.spawn(move || {
                    group
                        .iter()
                        .map(|(block, data)| ops::replace(data, *block, options.compressors))
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(chunks.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| err!(InstallFailed, "compression thread panicked"))??,
            );
        }
        Ok(out)
    })
}

/// The data section under construction.
struct BlobFile {
    file: BufWriter<File>,
    path: PathBuf,
    len: u64,
}

impl BlobFile {
    fn create(path: &Path) -> Result<Self> {
        let file =
            File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(BlobFile {
            file: BufWriter::new(file),
            path: path.to_owned(),
            len: 0,
        })
    }

    fn add(&mut self, op: GeneratedOp) -> Result<pb::InstallOperation> {
        let mut out = pb::InstallOperation::new();
        out.set_type(kind_to_proto(op.kind));
        if !op.blob.is_empty() {
            out.set_data_offset(self.len);
            out.set_data_length(op.blob.len() as u64);
            out.set_data_sha256_hash(sha256(&op.blob).to_vec());
            self.file
                .write_all(&op.blob)
                .map_err(|e| Error::io(self.path.display(), e))?;
            self.len += op.blob.len() as u64;
        }
        for e in &op.src_extents {
            out.src_extents.push(extent(e));
        }
        for e in &op.dst_extents {
            out.dst_extents.push(extent(e));
        }
        if let Some(h) = op.src_sha256 {
            out.set_src_sha256_hash(h.to_vec());
        }
        Ok(out)
    }
}

fn extent(e: &crate::payload::Extent) -> pb::Extent {
    let mut out = pb::Extent::new();
    out.set_start_block(e.start_block);
    out.set_num_blocks(e.num_blocks);
    out
}

fn kind_to_proto(kind: crate::payload::OpKind) -> pb::install_operation::Type {
    use crate::payload::OpKind as K;
    use pb::install_operation::Type as T;
    match kind {
        K::Replace => T::REPLACE,
        K::ReplaceBz => T::REPLACE_BZ,
        K::ReplaceXz => T::REPLACE_XZ,
        K::Zstd => T::ZSTD,
        K::Zero => T::ZERO,
        K::Discard => T::DISCARD,
        K::SourceCopy => T::SOURCE_COPY,
        K::SourceBsdiff => T::SOURCE_BSDIFF,
        K::BrotliBsdiff => T::BROTLI_BSDIFF,
        K::Puffdiff => T::PUFFDIFF,
        K::Zucchini => T::ZUCCHINI,
        K::Lz4diffBsdiff => T::LZ4DIFF_BSDIFF,
        K::Lz4diffPuffdiff => T::LZ4DIFF_PUFFDIFF,
        K::Move => T::MOVE,
        K::Bsdiff => T::BSDIFF,
    }
}

/// Writes header, manifest, metadata signature, blobs and payload signature, and computes the
/// properties. Signature sizes are fixed by the key, so the manifest can name them up front.
fn assemble(
    mut manifest: pb::DeltaArchiveManifest,
    options: &BuildOptions,
    blobs: &mut BlobFile,
    out: &Path,
) -> Result<BuildReport> {
    blobs
        .file
        .flush()
        .map_err(|e| Error::io(blobs.path.display(), e))?;
    let sig_size = options
        .signer
        .as_ref()
        .map(|s| encode_signatures(&[vec![0; s.signature_len()]]).len());
    if let Some(size) = sig_size {
        manifest.set_signatures_offset(blobs.len);
        manifest.set_signatures_size(size as u64);
    }
    let manifest_bytes = manifest
        .write_to_bytes()
        .map_err(|e| err!(InstallFailed, "encoding manifest: {e}"))?;
    // The builder's own output must pass the engine's validation.
    let checked = Manifest::parse(&manifest_bytes, None)?;
    let header = PayloadHeader {
        major_version: crate::payload::header::SUPPORTED_MAJOR_VERSION,
        manifest_size: manifest_bytes.len() as u64,
        metadata_signature_size: sig_size.unwrap_or(0) as u32,
    };
    let mut metadata = header.encode().to_vec();
    metadata.extend_from_slice(&manifest_bytes);
    let metadata_hash = sha256(&metadata);

    let mut payload_hash = ResumableSha256::new();
    payload_hash.update(&metadata);
    let mut file_hash = ResumableSha256::new();
    let mut writer = HashingWriter::create(out, &mut file_hash)?;
    writer.write(&metadata)?;
    if let Some(signer) = &options.signer {
        writer.write(&encode_signatures(&[signer.sign_digest(&metadata_hash)?]))?;
    }
    let mut blob_file = open(&blobs.path)?;
    blob_file
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(blobs.path.display(), e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = read_full(&mut blob_file, &mut buf, &blobs.path)?;
        if n == 0 {
            break;
        }
        payload_hash.update(&buf[..n]);
        writer.write(&buf[..n])?;
    }
    if let Some(signer) = &options.signer {
        writer.write(&encode_signatures(&[
            signer.sign_digest(&payload_hash.finish())?
        ]))?;
    }
    let size = writer.finish()?;
    let mut properties = PayloadProperties::new();
    properties.file_hash = Some(file_hash.finish());
    properties.file_size = Some(size);
    properties.metadata_hash = Some(metadata_hash);
    properties.metadata_size = Some(header.metadata_size());
    Ok(BuildReport {
        properties,
        manifest: checked,
    })
}

struct HashingWriter<'h> {
    file: BufWriter<File>,
    hash: &'h mut ResumableSha256,
    path: PathBuf,
    len: u64,
}

impl<'h> HashingWriter<'h> {
    fn create(path: &Path, hash: &'h mut ResumableSha256) -> Result<Self> {
        let file =
            File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(HashingWriter {
            file: BufWriter::new(file),
            hash,
            path: path.to_owned(),
            len: 0,
        })
    }
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.hash.update(data);
        self.len += data.len() as u64;
        self.file
            .write_all(data)
            .map_err(|e| Error::io(self.path.display(), e))
    }
    fn finish(mut self) -> Result<u64> {
        self.file
            .flush()
            .map_err(|e| Error::io(self.path.display(), e))?;
        Ok(self.len)
    }
}

fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))
}

fn image_size(path: &Path) -> Result<u64> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path.display(), e))?
        .len();
    if len == 0 || len % BLOCK_SIZE != 0 {
        bail!(
            MalformedPayload,
            "{}: {len} bytes is not a positive multiple of {BLOCK_SIZE}",
            path.display()
        );
    }
    Ok(len)
}

fn read_image(path: &Path) -> Result<Vec<u8>> {
    image_size(path)?;
    std::fs::read(path).map_err(|e| Error::io(path.display(), e))
}

fn read_full(file: &mut dyn Read, buf: &mut [u8], path: &Path) -> Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path.display(), e)),
        }
    }
    Ok(filled)
}
