//! The engine's [`PayloadSource`] over an encrypted payload: opens the encrypted file at the
//! chunk that holds the wanted plaintext offset (a Range request, so resuming works as for plain
//! payloads), and decrypts one chunk at a time as it streams. Memory is one chunk; a chunk is
//! released only after its tag verified, so no byte of a tampered, moved or cut chunk reaches
//! the engine, let alone the disk. The engine still checks every signature and hash over the
//! plaintext it gets.

use std::io::{self, Read};

use super::crypt::{ContentKey, Layout, TAG_LEN};
use crate::engine::PayloadSource;
use crate::error::{Error, Result};

/// An encrypted payload, as plaintext.
pub struct DecryptingSource<S> {
    inner: S,
    key: ContentKey,
    layout: Layout,
}

impl<S: PayloadSource> DecryptingSource<S> {
    /// `inner` reads the encrypted file; its size, when known, must be the layout's.
    pub fn new(inner: S, key: ContentKey, layout: Layout) -> Result<Self> {
        let expected = layout
            .encrypted_size()
            .ok_or_else(|| crate::err!(SizeMismatch, "encrypted payload size overflows"))?;
        if let Some(size) = inner.size().filter(|size| *size != expected) {
            crate::bail!(
                VerificationFailed,
                "the encrypted payload is {size} bytes, its {} chunks of {} bytes need {expected}: \
                 truncated or padded",
                layout.chunks(),
                layout.chunk_size
            );
        }
        Ok(DecryptingSource { inner, key, layout })
    }

    /// The source of the encrypted bytes.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: PayloadSource + Send> PayloadSource for DecryptingSource<S> {
    fn size(&self) -> Option<u64> {
        Some(self.layout.plain_size)
    }

    fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        if offset > self.layout.plain_size {
            crate::bail!(SizeMismatch, "offset {offset} past the payload's end");
        }
        let chunk_size = u64::from(self.layout.chunk_size);
        let index = offset / chunk_size;
        let start = self
            .layout
            .encrypted_offset(index)
            .ok_or_else(|| crate::err!(SizeMismatch, "chunk offset overflows"))?;
        let reader = self.inner.open(start)?;
        let capacity = usize::try_from(chunk_size + TAG_LEN)
            .map_err(|_| crate::err!(SizeMismatch, "chunk size too large"))?;
        Ok(Box::new(Decrypting {
            reader,
            key: &self.key,
            layout: self.layout,
            next: index,
            buf: Vec::with_capacity(capacity),
            pos: 0,
            end: 0,
            // `offset % chunk_size` < chunk_size, which fits a usize (checked above).
            skip: (offset % chunk_size) as usize,
        }))
    }
}

struct Decrypting<'a> {
    reader: Box<dyn Read + Send + 'a>,
    key: &'a ContentKey,
    layout: Layout,
    /// The next chunk to read.
    next: u64,
    /// The current chunk; plaintext at `pos..end` once it verified.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Plaintext bytes of the first chunk before the offset asked for.
    skip: usize,
}

impl Decrypting<'_> {
    fn next_chunk(&mut self) -> Result<bool> {
        let index = self.next;
        if index >= self.layout.chunks() {
            return Ok(false);
        }
        // plain_len <= chunk_size, which fits a usize.
        let want = (self.layout.plain_len(index) + TAG_LEN) as usize;
        self.buf.resize(want, 0);
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut self.buf[got..]) {
                Ok(0) => crate::bail!(
                    VerificationFailed,
                    "the encrypted payload ends inside chunk {index} ({got} of {want} bytes)"
                ),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match crate::download::error_of(&e) {
                        Some(error) => Error::new(error.code, error.message.clone()),
                        None => crate::err!(DownloadFailed, "reading chunk {index}: {e}"),
                    })
                }
            }
        }
        let plain_len = self
            .key
            .open_chunk(index, self.layout.is_last(index), &mut self.buf)?
            .len();
        self.pos = self.skip.min(plain_len);
        self.skip = 0;
        self.end = plain_len;
        self.next = index + 1;
        Ok(true)
    }
}

impl Read for Decrypting<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.end {
            if !self.next_chunk().map_err(io::Error::other)? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::crypt::encrypt_all;
    use crate::ErrorCode;

    /// The encrypted bytes in memory, as a payload source.
    struct Bytes(Vec<u8>);

    impl PayloadSource for Bytes {
        fn size(&self) -> Option<u64> {
            Some(self.0.len() as u64)
        }
        fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
            Ok(Box::new(&self.0[offset as usize..]))
        }
    }

    fn setup(plain: &[u8]) -> (Vec<u8>, ContentKey, Layout) {
        let layout = Layout {
            chunk_size: 4096,
            plain_size: plain.len() as u64,
        };
        let key = ContentKey::generate().unwrap();
        let sealed = encrypt_all(&key, layout, plain).unwrap();
        (sealed, key, layout)
    }

    fn read_all(source: &mut dyn PayloadSource, offset: u64) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        source.open(offset)?.read_to_end(&mut out).map_err(|e| {
            crate::download::error_of(&e)
                .map(|e| Error::new(e.code, e.message.clone()))
                .unwrap()
        })?;
        Ok(out)
    }

    #[test]
    fn decrypts_from_any_offset_and_refuses_tampering() {
        let plain: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (sealed, key, layout) = setup(&plain);
        let again = key.duplicate();
        let mut source = DecryptingSource::new(Bytes(sealed.clone()), key, layout).unwrap();
        assert_eq!(read_all(&mut source, 0).unwrap(), plain);
        assert_eq!(read_all(&mut source, 5000).unwrap(), plain[5000..]);
        assert_eq!(read_all(&mut source, 10_000).unwrap(), b"");

        // Chunks 0 and 1 swapped: the first read fails, nothing is returned.
        let mut swapped = sealed.clone();
        let c = 4096 + 16;
        let (a, b) = swapped.split_at_mut(c);
        a.swap_with_slice(&mut b[..c]);
        let mut source = DecryptingSource::new(Bytes(swapped), again, layout).unwrap();
        let mut reader = source.open(0).unwrap();
        let mut buf = [0u8; 10];
        let e = reader.read(&mut buf).unwrap_err();
        let e = crate::download::error_of(&e).unwrap();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        assert!(e.message.contains("chunk 0"), "{e}");
    }

    #[test]
    fn truncated_payload_is_refused() {
        let plain = vec![5u8; 9000];
        let (sealed, key, layout) = setup(&plain);
        let cut = sealed[..2 * (4096 + 16)].to_vec();
        // Cut after chunk 1: the size no longer matches the signed layout.
        let e = DecryptingSource::new(Bytes(cut.clone()), key.duplicate(), layout)
            .err()
            .unwrap();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        // A source that does not know its size ends inside the layout: refused there.
        struct Unsized(Vec<u8>);
        impl PayloadSource for Unsized {
            fn size(&self) -> Option<u64> {
                None
            }
            fn open(&mut self, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
                Ok(Box::new(&self.0[offset as usize..]))
            }
        }
        let mut source =
            DecryptingSource::new(Unsized(cut.clone()), key.duplicate(), layout).unwrap();
        let e = read_all(&mut source, 0).unwrap_err();
        assert_eq!(e.code, ErrorCode::VerificationFailed);
        assert!(e.message.contains("ends inside chunk 2"), "{e}");
        // A layout shortened to match the cut: chunk 1 was not sealed as the last one.
        let short = Layout {
            chunk_size: 4096,
            plain_size: 8192,
        };
        let mut source = DecryptingSource::new(Bytes(cut), key, short).unwrap();
        let e = read_all(&mut source, 0).unwrap_err();
        assert!(e.message.contains("chunk 1 does not authenticate"), "{e}");
    }
}
