//! Reading a payload's metadata (header, manifest, metadata signature) from a file, as
//! `verifyPayloadApplicable(metadataFilename)` names one and as `abupdate verify` reads one.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::engine::metadata::Metadata;
use crate::error::Result;
use crate::payload::HEADER_SIZE;

/// The metadata of the payload at `offset` in `path` (update_engine's metadata file, or a
/// whole payload: only the metadata is read).
pub fn read_metadata(path: &Path, offset: u64) -> Result<Vec<u8>> {
    let shown = path.display();
    let mut file =
        File::open(path).map_err(|e| crate::err!(MalformedPayload, "opening {shown}: {e}"))?;
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| crate::err!(MalformedPayload, "{shown}: seeking to {offset}: {e}"))?;
    let mut header = vec![0u8; HEADER_SIZE];
    file.read_exact(&mut header)
        .map_err(|e| crate::err!(MalformedPayload, "{shown}: no payload header: {e}"))?;
    let needed = Metadata::needed(&header, None)?;
    let needed = usize::try_from(needed)
        .map_err(|_| crate::err!(MalformedPayload, "{shown}: metadata of {needed} bytes"))?;
    let mut metadata = header;
    metadata.resize(needed, 0);
    let rest = metadata.get_mut(HEADER_SIZE..).ok_or_else(|| {
        crate::err!(
            MalformedPayload,
            "{shown}: metadata shorter than its header"
        )
    })?;
    file.read_exact(rest)
        .map_err(|e| crate::err!(MalformedPayload, "{shown}: metadata cut short: {e}"))?;
    Ok(metadata)
}
