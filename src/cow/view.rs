//! The snapshot's view read block by block, as snapuserd serves it before the merge: each new
//! block from the last op that writes it (zero, a copy of the base, REPLACE data, XOR data over
//! the base), every other block from the base. Where [`CowReader::apply`] writes a whole image,
//! this answers random reads without one (the engine's checks on a snapshot, an NBD device).

use std::collections::HashMap;

use super::format::OpType;
use super::reader::{CowReader, ReadAt};
use super::CowError;

/// New block → the op that makes it: the COW's ops indexed for random reads.
#[derive(Clone, Debug)]
pub struct BlockMap {
    reader: CowReader,
    /// New block → (op index, block within the op's unit); the last op of a block wins.
    blocks: HashMap<u64, (usize, u64)>,
}

/// The last data unit decompressed (op index, bytes): consecutive blocks share a unit of a
/// multi-block compression factor, and it is decompressed once for them.
#[derive(Debug, Default)]
pub struct UnitCache {
    op: Option<usize>,
    data: Vec<u8>,
}

impl BlockMap {
    /// Indexes the data ops of `reader`.
    pub fn new(reader: CowReader) -> BlockMap {
        let mut blocks = HashMap::new();
        for (i, op) in reader.ops.iter().enumerate() {
            if op.kind.is_metadata() {
                continue;
            }
            let n = if op.kind == OpType::Replace {
                1u64 << op.factor_bits
            } else {
                1
            };
            for k in 0..n {
                blocks.insert(op.new_block.saturating_add(k), (i, k));
            }
        }
        BlockMap { reader, blocks }
    }

    /// The parsed COW.
    pub fn reader(&self) -> &CowReader {
        &self.reader
    }

    /// Block `b` of the view into `out` (one block long), reading op data from `cow` and
    /// copy and XOR sources from `base`; the base reads as zeros past its end (a partition
    /// that grows).
    pub fn read_block(
        &self,
        cow: &(impl ReadAt + ?Sized),
        base: &(impl ReadAt + ?Sized),
        b: u64,
        out: &mut [u8],
        unit: &mut UnitCache,
    ) -> Result<(), CowError> {
        let bs = self.reader.block_size();
        if out.len() as u64 != bs {
            return Err(CowError::invalid(format!(
                "a block buffer of {} bytes, blocks of {bs}",
                out.len()
            )));
        }
        let Some(&(i, k)) = self.blocks.get(&b) else {
            return read_base(base, b.saturating_mul(bs), out);
        };
        let op = self.reader.ops[i];
        match op.kind {
            OpType::Zero => out.fill(0),
            OpType::Copy => read_base(base, op.source.saturating_mul(bs), out)?,
            OpType::Replace | OpType::Xor => {
                if unit.op != Some(i) {
                    unit.op = None;
                    unit.data.resize(self.reader.unit_size(&op) as usize, 0);
                    self.reader.read_data(cow, &op, &mut unit.data)?;
                    unit.op = Some(i);
                }
                let at = usize::try_from(k.saturating_mul(bs))
                    .map_err(|_| CowError::malformed("unit offset overflow"))?;
                let data = at
                    .checked_add(out.len())
                    .and_then(|end| unit.data.get(at..end))
                    .ok_or_else(|| CowError::malformed("block past its op's unit"))?;
                out.copy_from_slice(data);
                if op.kind == OpType::Xor {
                    let mut old = vec![0u8; out.len()];
                    read_base(base, op.source, &mut old)?;
                    for (o, x) in out.iter_mut().zip(&old) {
                        *o ^= x;
                    }
                }
            }
            _ => out.fill(0),
        }
        Ok(())
    }

    /// `buf.len()` bytes of the view from byte `offset` (any alignment).
    pub fn read_range(
        &self,
        cow: &(impl ReadAt + ?Sized),
        base: &(impl ReadAt + ?Sized),
        buf: &mut [u8],
        offset: u64,
    ) -> Result<(), CowError> {
        let bs = self.reader.block_size();
        let mut block = vec![0u8; bs as usize];
        let mut unit = UnitCache::default();
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset
                .checked_add(done as u64)
                .ok_or_else(|| CowError::invalid("read offset overflow"))?;
            let (b, within) = (at / bs, (at % bs) as usize);
            self.read_block(cow, base, b, &mut block, &mut unit)?;
            let n = (bs as usize - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }
}

/// Reads the base at `at`; past its end it reads zeros.
pub(crate) fn read_base(
    base: &(impl ReadAt + ?Sized),
    at: u64,
    buf: &mut [u8],
) -> Result<(), CowError> {
    let have = base.size().saturating_sub(at).min(buf.len() as u64) as usize;
    if have > 0 {
        base.read_at(at, &mut buf[..have])?;
    }
    buf[have..].fill(0);
    Ok(())
}

/// A COW over its base as one image of `size` bytes: the snapshot's view, read at offsets.
pub struct SnapshotView<C, B> {
    map: BlockMap,
    cow: C,
    base: B,
    size: u64,
}

impl<C: ReadAt, B: ReadAt> SnapshotView<C, B> {
    /// Parses `cow` (whole: a v2 COW needs its footer, a v3 one is read to its last resume
    /// point) over `base`; `size` defaults to the larger of the base and the COW's last block.
    pub fn new(cow: C, base: B, size: Option<u64>) -> Result<Self, CowError> {
        let reader = CowReader::parse(&cow, None)?;
        let size = size.unwrap_or_else(|| base.size().max(reader.image_end()));
        Ok(SnapshotView {
            map: BlockMap::new(reader),
            cow,
            base,
            size,
        })
    }

    /// The parsed COW.
    pub fn reader(&self) -> &CowReader {
        self.map.reader()
    }
}

impl<C: ReadAt, B: ReadAt> ReadAt for SnapshotView<C, B> {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset
            .checked_add(buf.len() as u64)
            .map_or(true, |end| end > self.size)
        {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
        }
        self.map
            .read_range(&self.cow, &self.base, buf, offset)
            .map_err(|e| match e {
                CowError::Io(e) => e,
                e => std::io::Error::other(e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cow::{write_image_cow, Compression, CowOptions};

    /// Reads of any alignment through the view equal the new image, for a COW written
    /// against a base (copies, replaced and zero blocks, a longer image).
    #[test]
    fn the_view_reads_the_new_image_at_any_offset() {
        const BS: usize = 4096;
        let mut old = vec![0u8; 64 * BS];
        for (i, b) in old.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        }
        let mut new = old.clone();
        new.copy_within(10 * BS..20 * BS, 30 * BS);
        new[5 * BS..6 * BS].fill(0);
        new[40 * BS + 7] ^= 1;
        new.extend(std::iter::repeat(7u8).take(8 * BS));
        let opts = CowOptions {
            compression: Compression::Lz4,
            compression_factor: 16 * BS as u32,
            threads: 1,
            ..CowOptions::default()
        };
        let (cow, _) = write_image_cow(&new, Some(&old), opts, Vec::new()).unwrap();
        let view = SnapshotView::new(cow, old, None).unwrap();
        assert_eq!(view.size(), new.len() as u64);
        for (at, len) in [
            (0, new.len()),
            (123, 9000),
            (30 * BS - 5, 3 * BS),
            (69 * BS, 3 * BS),
        ] {
            let mut got = vec![0u8; len];
            view.read_at(at as u64, &mut got).unwrap();
            assert!(got == new[at..at + len], "at {at}, {len} bytes");
        }
        let mut past = [0u8; 2];
        assert!(view.read_at(new.len() as u64 - 1, &mut past).is_err());
    }
}
