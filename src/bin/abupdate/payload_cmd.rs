//! `abupdate payload info|build`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use abupdate::build::{self, ops::Compressors, BuildOptions, PartitionSpec};
use abupdate::engine::metadata::Metadata;
use abupdate::payload::keys::TrustedKeys;
use abupdate::payload::manifest::DynamicPartitions;
use abupdate::payload::signature::{SignatureSet, Signer};
use abupdate::payload::{PayloadHeader, HEADER_SIZE};

// Made once from argv: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum PayloadCommand {
    /// Header, partitions, operation counts by type, signatures, sizes.
    Info {
        /// The payload file (payload.bin; for one inside an OTA zip, unzip it first).
        payload: PathBuf,
    },
    /// Build a full payload (NAME=NEW.img) or a delta (NAME=NEW.img:OLD.img).
    Build {
        #[arg(long)]
        out: PathBuf,
        /// NAME=NEW.img[:OLD.img], once per partition.
        #[arg(long = "partition", required = true)]
        partitions: Vec<String>,
        /// RSA private key (PEM) to sign the metadata and the payload with.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to write payload_properties.txt (default: beside the payload).
        #[arg(long)]
        properties: Option<PathBuf>,
        /// Skip bzip2 candidates (much faster on large images; xz nearly always wins).
        #[arg(long)]
        no_bzip2: bool,
        /// Append a hash tree and FEC after NAME's data (an image without an AVB footer);
        /// in a delta the device computes them (repeatable).
        #[arg(long = "append-verity", value_name = "NAME")]
        append_verity: Vec<String>,
        /// The manifest's max_timestamp (the build date, seconds since the epoch).
        #[arg(long)]
        max_timestamp: Option<i64>,
        /// The manifest's security_patch_level (YYYY-MM-DD).
        #[arg(long)]
        security_patch_level: Option<String>,
        /// Every partition's version (AOSP uses the build timestamp).
        #[arg(long)]
        partition_version: Option<String>,
        /// A group of logical partitions in super, NAME=SIZE:part,part (repeatable): writes
        /// dynamic_partition_metadata (SIZE in bytes, 0 for unlimited).
        #[arg(long = "group", value_name = "NAME=SIZE:PARTS")]
        groups: Vec<String>,
        /// Set dynamic_partition_metadata.snapshot_enabled (a Virtual A/B target build).
        #[arg(long)]
        snapshot_enabled: bool,
        /// A partial update: partitions not given stay as the running slot has them.
        #[arg(long)]
        partial: bool,
        /// Run PATH (relative to the partition's root) from the new partition before the slot
        /// switch, mounted as FSTYPE; `optional`: a failure does not fail the update
        /// (repeatable).
        #[arg(long = "postinstall", value_name = "PART=PATH[:FSTYPE][:optional]")]
        postinstall: Vec<String>,
    },
}

pub fn run(cmd: PayloadCommand) -> Result<()> {
    match cmd {
        PayloadCommand::Info { payload } => info(&payload),
        PayloadCommand::Build {
            out,
            partitions,
            key,
            properties,
            no_bzip2,
            max_timestamp,
            security_patch_level,
            partition_version,
            append_verity,
            groups,
            snapshot_enabled,
            partial,
            postinstall,
        } => {
            let postinstall = postinstall
                .iter()
                .map(|p| build::parse_postinstall(p))
                .collect::<Result<Vec<_>, _>>()?;
            let groups = groups
                .iter()
                .map(|g| build::parse_group(g))
                .collect::<Result<Vec<_>, _>>()?;
            let dynamic = (!groups.is_empty()).then_some(DynamicPartitions {
                groups,
                snapshot_enabled,
                vabc: Default::default(),
            });
            let mut specs = partitions
                .iter()
                .map(|p| PartitionSpec::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            for spec in &mut specs {
                spec.append_verity = append_verity.contains(&spec.name);
            }
            let signer = match key {
                Some(path) => Some(Signer::from_pem(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?,
                )?),
                None => None,
            };
            let options = BuildOptions {
                signer,
                compressors: Compressors {
                    xz: true,
                    bzip2: !no_bzip2,
                },
                max_timestamp,
                security_patch_level,
                partition_version,
                dynamic,
                partial_update: partial,
                postinstall,
                ..BuildOptions::default()
            };
            let report = build::build(&specs, &options, &out)?;
            let props_path =
                properties.unwrap_or_else(|| out.with_file_name("payload_properties.txt"));
            std::fs::write(&props_path, report.properties.to_text())
                .with_context(|| format!("writing {}", props_path.display()))?;
            println!(
                "wrote {} ({} bytes, {} operations) and {}",
                out.display(),
                report.properties.file_size.unwrap_or(0),
                report.manifest.operation_count(),
                props_path.display()
            );
            Ok(())
        }
    }
}

fn info(path: &PathBuf) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| {
        abupdate::err!(DownloadFailed, "cannot read {}: {e}", path.display()).caused_by(e)
    })?;
    let header = PayloadHeader::parse(&bytes, Some(bytes.len() as u64))?;
    let meta_end = header.data_offset() as usize;
    // Inspection, not trust: the manifest is printed whether or not anyone signed it.
    let metadata = Metadata::verify(
        bytes[..meta_end].to_vec(),
        Some(bytes.len() as u64),
        &Default::default(),
        &TrustedKeys::accept_unsigned(),
    )?;
    let m = &metadata.manifest;
    println!("payload:           {}", path.display());
    println!("size:              {} bytes", bytes.len());
    println!("major version:     {}", header.major_version);
    println!(
        "minor version:     {} ({})",
        m.minor_version,
        if m.is_delta() { "delta" } else { "full" }
    );
    println!(
        "metadata size:     {} (+{} signature)",
        header.metadata_size(),
        header.metadata_signature_size
    );
    println!("data:              {} bytes of blobs", m.blobs_size);
    if m.max_timestamp != 0 {
        println!("max timestamp:     {}", m.max_timestamp);
    }
    if let Some(spl) = &m.security_patch_level {
        println!("security patch:    {spl}");
    }
    let count = |blob: &[u8]| SignatureSet::parse(blob).map(|s| s.len()).unwrap_or(0);
    let meta_sigs = count(&bytes[header.metadata_size() as usize..meta_end]);
    let payload_sigs = m.signatures.map_or(0, |(o, l)| {
        let start = meta_end + o as usize;
        bytes.get(start..start + l as usize).map_or(0, count)
    });
    println!("signatures:        metadata {meta_sigs}, payload {payload_sigs}");
    println!("partitions:");
    for p in &m.partitions {
        let mut kinds = BTreeMap::new();
        for op in &p.operations {
            *kinds.entry(op.kind.name()).or_insert(0) += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "  {:<12} {:>12} bytes  {:>6} ops  {}{}",
            p.name,
            p.new_info.size,
            p.operations.len(),
            kinds.join(", "),
            if p.verity.is_some() { "  [verity]" } else { "" }
        );
        if let Some(step) = &p.postinstall {
            println!(
                "  {:<12} postinstall {} ({}{})",
                "",
                step.path,
                if step.filesystem_type.is_empty() {
                    "any file system"
                } else {
                    &step.filesystem_type
                },
                if step.optional { ", optional" } else { "" }
            );
        }
        print_cow_plan(&p.cow);
    }
    if m.partial_update {
        println!("partial update:    yes (partitions not listed keep their contents)");
    }
    for a in &m.apex_info {
        println!(
            "apex:              {} v{}{}",
            a.package_name,
            a.version,
            if a.is_compressed {
                format!(", compressed, {} bytes decompressed", a.decompressed_size)
            } else {
                String::new()
            }
        );
    }
    if let Some(d) = &m.dynamic {
        println!(
            "dynamic groups:{}",
            if d.snapshot_enabled {
                "    (snapshot_enabled)"
            } else {
                ""
            }
        );
        for g in &d.groups {
            println!(
                "  {:<12} {:>12} bytes max  {}",
                g.name,
                g.size,
                g.partitions.join(", ")
            );
        }
        let v = &d.vabc;
        println!(
            "virtual A/B:       vabc {}{}{}{}{}",
            if v.enabled { "enabled" } else { "disabled" },
            v.compression_param
                .as_ref()
                .map_or(String::new(), |c| format!(", compression {c}")),
            v.cow_version
                .map_or(String::new(), |c| format!(", cow version {c}")),
            v.compression_factor
                .map_or(String::new(), |c| format!(", compression factor {c}")),
            match (v.threaded, v.batch_writes) {
                (false, false) => "",
                (true, false) => ", threaded",
                (false, true) => ", batch writes",
                (true, true) => ", threaded, batch writes",
            }
        );
    }
    let _ = HEADER_SIZE;
    Ok(())
}

/// A partition's Virtual A/B plan, when the payload has one.
fn print_cow_plan(cow: &abupdate::payload::CowPlan) {
    if cow.merge_operations.is_empty()
        && cow.estimate_cow_size.is_none()
        && cow.estimate_op_count_max.is_none()
    {
        return;
    }
    let mut kinds = BTreeMap::new();
    for op in &cow.merge_operations {
        *kinds.entry(op.kind.name()).or_insert(0) += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "  {:<12} cow estimate {} bytes, {} ops max; {} merge ops {}",
        "",
        cow.estimate_cow_size.unwrap_or(0),
        cow.estimate_op_count_max.unwrap_or(0),
        cow.merge_operations.len(),
        kinds.join(", ")
    );
}
