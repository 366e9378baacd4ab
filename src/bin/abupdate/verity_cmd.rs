//! `abupdate verity build|verify`: dm-verity metadata of an image, by hand.
//!
//! The layout comes from the image's AVB hashtree footer when it has one, else from the
//! options (tree right after `--data-size` bytes, FEC right after the tree).

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use abupdate::avb::{self, Descriptor};
use abupdate::device::verity_image::{build_image, verify_image, write_image};
use abupdate::verity::VerityLayout;
use abupdate::verity::{FecRoots, HashAlgorithm};

#[derive(Subcommand)]
pub enum VerityCommand {
    /// Compute the root digest, hash tree and FEC; with --write, store them in the image.
    Build {
        #[command(flatten)]
        layout: LayoutArgs,
        /// Write the tree and FEC into the image at their offsets.
        #[arg(long)]
        write: bool,
    },
    /// Check the stored tree (and FEC) against the data; report the first bad block.
    Verify {
        #[command(flatten)]
        layout: LayoutArgs,
        /// Expected root digest (hex); default: the AVB descriptor's, if any.
        #[arg(long)]
        root: Option<String>,
    },
}

#[derive(Args)]
pub struct LayoutArgs {
    image: PathBuf,
    /// Bytes of data the tree covers (default: from the AVB footer).
    #[arg(long)]
    data_size: Option<u64>,
    #[arg(long, default_value = "sha256")]
    hash: String,
    /// Salt in hex.
    #[arg(long, default_value = "")]
    salt: String,
    /// FEC roots (2-24); 0 for no FEC.
    #[arg(long, default_value_t = 2)]
    fec_roots: u32,
}

pub fn run(cmd: VerityCommand) -> Result<()> {
    match cmd {
        VerityCommand::Build { layout, write } => {
            let file = open(&layout, write)?;
            let (lay, _) = resolve(&layout)?;
            let data = build_image(&file, &lay)?;
            if write {
                write_image(&file, &lay, &data)?;
                file.sync_all().context("syncing the image")?;
            }
            println!("root digest: {}", abupdate::hex::encode(&data.root_digest));
            println!(
                "hash tree:   {} bytes at {}",
                data.tree.len(),
                lay.tree_offset
            );
            println!(
                "fec:         {} bytes at {}",
                data.fec.len(),
                lay.fec_offset()?
            );
            Ok(())
        }
        VerityCommand::Verify { layout, root } => {
            let file = open(&layout, false)?;
            let (lay, descriptor_root) = resolve(&layout)?;
            let expected = match root {
                Some(hex_root) => Some(unhex(&hex_root)?),
                None => descriptor_root,
            };
            let data = verify_image(&file, &lay, expected.as_deref())?;
            println!(
                "ok: root digest {}",
                abupdate::hex::encode(&data.root_digest)
            );
            Ok(())
        }
    }
}

fn open(args: &LayoutArgs, write: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .open(&args.image)
        .with_context(|| format!("opening {}", args.image.display()))
}

/// The layout from the AVB footer's hashtree descriptor, else from the options.
fn resolve(args: &LayoutArgs) -> Result<(VerityLayout, Option<Vec<u8>>)> {
    if args.data_size.is_none() {
        let bytes = std::fs::read(&args.image)?;
        let name = args
            .image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let vbmeta = avb::find_vbmeta(name, &bytes).context("no --data-size and no AVB footer")?;
        let Some(d) = vbmeta.descriptors().iter().find_map(|d| match d {
            Descriptor::Hashtree(h) => Some(h),
            _ => None,
        }) else {
            bail!("the image's vbmeta has no hashtree descriptor");
        };
        let layout = VerityLayout {
            alg: HashAlgorithm::from_name(&d.hash_algorithm)?,
            salt: d.salt.clone(),
            data_size: d.image_size,
            tree_offset: d.tree_offset,
            fec_roots: (d.fec_num_roots > 0)
                .then(|| FecRoots::new(d.fec_num_roots))
                .transpose()?,
        };
        return Ok((
            layout,
            Some(d.root_digest.clone()).filter(|r| !r.is_empty()),
        ));
    }
    let data_size = args.data_size.unwrap_or_default();
    let mut layout = VerityLayout::new(
        HashAlgorithm::from_name(&args.hash)?,
        &unhex(&args.salt)?,
        data_size,
    );
    layout.fec_roots = (args.fec_roots > 0)
        .then(|| FecRoots::new(args.fec_roots))
        .transpose()?;
    Ok((layout, None))
}

fn unhex(s: &str) -> Result<Vec<u8>> {
    abupdate::hex::decode(s).with_context(|| format!("{s:?} is not hex"))
}
