//! The NBD transmission phase as the kernel's nbd driver speaks it (`linux/nbd.h`), with no
//! I/O: a 28-byte request (magic, command and flags, handle, offset, length; a write's data
//! follows it), a 16-byte reply (magic, error, the request's handle; a read's data follows
//! it), and what a read-only server answers to each request.

/// `NBD_REQUEST_MAGIC`.
pub const REQUEST_MAGIC: u32 = 0x2560_9513;
/// `NBD_REPLY_MAGIC` (simple replies).
pub const REPLY_MAGIC: u32 = 0x6744_6698;
/// `sizeof(struct nbd_request)`.
pub const REQUEST_SIZE: usize = 28;
/// `sizeof(struct nbd_reply)`.
pub const REPLY_SIZE: usize = 16;

/// `NBD_FLAG_HAS_FLAGS`: the flags below are meaningful.
pub const FLAG_HAS_FLAGS: u32 = 1 << 0;
/// `NBD_FLAG_READ_ONLY`: the kernel makes the device read-only.
pub const FLAG_READ_ONLY: u32 = 1 << 1;

/// The largest read answered: the kernel splits requests far below this (`max_sectors`);
/// a longer one is refused rather than allocated.
pub const MAX_READ: u32 = 32 << 20;

/// Errors in replies: Linux errno values, as the protocol carries them.
pub const EPERM: u32 = 1;
/// `EIO`: the image could not be read.
pub const EIO: u32 = 5;
/// `EINVAL`: a request outside the device or of an unknown command.
pub const EINVAL: u32 = 22;

/// An error of the NBD framing.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// A request does not start with `NBD_REQUEST_MAGIC`: the stream is out of step.
    #[error("NBD request with magic {0:#010x}")]
    BadMagic(u32),
    /// Fewer bytes than a request.
    #[error("NBD request of {0} bytes, {REQUEST_SIZE} needed")]
    Short(usize),
    /// The socket or the device failed.
    #[error("NBD I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The command of a request (`NBD_CMD_*`, the low 16 bits of its type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `NBD_CMD_READ`.
    Read,
    /// `NBD_CMD_WRITE`: its data follows the request.
    Write,
    /// `NBD_CMD_DISC`: the client is going; no reply.
    Disconnect,
    /// `NBD_CMD_FLUSH`.
    Flush,
    /// `NBD_CMD_TRIM`.
    Trim,
    /// `NBD_CMD_WRITE_ZEROES`.
    WriteZeroes,
    /// Any other command number.
    Other(u16),
}

impl Command {
    fn from_u16(v: u16) -> Command {
        match v {
            0 => Command::Read,
            1 => Command::Write,
            2 => Command::Disconnect,
            3 => Command::Flush,
            4 => Command::Trim,
            6 => Command::WriteZeroes,
            v => Command::Other(v),
        }
    }

    fn to_u16(self) -> u16 {
        match self {
            Command::Read => 0,
            Command::Write => 1,
            Command::Disconnect => 2,
            Command::Flush => 3,
            Command::Trim => 4,
            Command::WriteZeroes => 6,
            Command::Other(v) => v,
        }
    }
}

/// One request (`struct nbd_request`, big-endian fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// Command flags (`NBD_CMD_FLAG_*`, the high 16 bits of the type).
    pub flags: u16,
    /// The client's handle, echoed in the reply.
    pub handle: [u8; 8],
    /// Byte offset on the device.
    pub offset: u64,
    /// Bytes to read or write.
    pub length: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    x.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(x)
}

impl Request {
    /// Parses the first [`REQUEST_SIZE`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<Request, NbdError> {
        let b = b.get(..REQUEST_SIZE).ok_or(NbdError::Short(b.len()))?;
        let magic = be32(b, 0);
        if magic != REQUEST_MAGIC {
            return Err(NbdError::BadMagic(magic));
        }
        let kind = be32(b, 4);
        let mut handle = [0u8; 8];
        handle.copy_from_slice(&b[8..16]);
        let mut offset = [0u8; 8];
        offset.copy_from_slice(&b[16..24]);
        Ok(Request {
            command: Command::from_u16(kind as u16),
            flags: (kind >> 16) as u16,
            handle,
            offset: u64::from_be_bytes(offset),
            length: be32(b, 24),
        })
    }

    /// The request's bytes, as the kernel sends them.
    pub fn to_bytes(&self) -> [u8; REQUEST_SIZE] {
        let mut b = [0u8; REQUEST_SIZE];
        b[..4].copy_from_slice(&REQUEST_MAGIC.to_be_bytes());
        let kind = (u32::from(self.flags) << 16) | u32::from(self.command.to_u16());
        b[4..8].copy_from_slice(&kind.to_be_bytes());
        b[8..16].copy_from_slice(&self.handle);
        b[16..24].copy_from_slice(&self.offset.to_be_bytes());
        b[24..28].copy_from_slice(&self.length.to_be_bytes());
        b
    }
}

/// The reply header for the request of `handle`: `error` 0 or an errno.
pub fn reply(handle: [u8; 8], error: u32) -> [u8; REPLY_SIZE] {
    let mut b = [0u8; REPLY_SIZE];
    b[..4].copy_from_slice(&REPLY_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&error.to_be_bytes());
    b[8..16].copy_from_slice(&handle);
    b
}

/// What a read-only server does with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reply 0 followed by `length` bytes of the device from `offset`.
    Read {
        /// Byte offset.
        offset: u64,
        /// Bytes.
        length: u32,
    },
    /// Reply 0 with no data (a flush: nothing is buffered).
    Done,
    /// Skip `discard` bytes of request data, then reply `error`.
    Refuse {
        /// The errno to reply.
        error: u32,
        /// Bytes of data that follow the request (a write's).
        discard: u32,
    },
    /// No reply: the client disconnects.
    Disconnect,
}

/// The answer of a read-only device of `size` bytes to `req`: reads inside the device are
/// served, writes refused (their data still read off the stream), anything else refused.
pub fn answer(req: &Request, size: u64) -> Action {
    let inside = req
        .offset
        .checked_add(u64::from(req.length))
        .is_some_and(|end| end <= size);
    match req.command {
        Command::Read if inside && req.length <= MAX_READ => Action::Read {
            offset: req.offset,
            length: req.length,
        },
        Command::Read => Action::Refuse {
            error: EINVAL,
            discard: 0,
        },
        Command::Write => Action::Refuse {
            error: EPERM,
            discard: req.length,
        },
        Command::Trim | Command::WriteZeroes => Action::Refuse {
            error: EPERM,
            discard: 0,
        },
        Command::Flush => Action::Done,
        Command::Disconnect => Action::Disconnect,
        Command::Other(_) => Action::Refuse {
            error: EINVAL,
            discard: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read request as a 6.1 kernel sends it (bytes written out by hand from `nbd.h`).
    #[test]
    fn a_kernel_read_request_parses() {
        let bytes = [
            0x25, 0x60, 0x95, 0x13, // magic
            0x00, 0x01, 0x00, 0x00, // FUA flag, NBD_CMD_READ
            1, 2, 3, 4, 5, 6, 7, 8, // handle
            0, 0, 0, 0, 0, 0, 0x10, 0x00, // from 4096
            0, 0x02, 0, 0, // 128 KiB
        ];
        let req = Request::parse(&bytes).unwrap();
        assert_eq!(
            req,
            Request {
                command: Command::Read,
                flags: 1,
                handle: [1, 2, 3, 4, 5, 6, 7, 8],
                offset: 4096,
                length: 128 << 10,
            }
        );
        assert_eq!(req.to_bytes(), bytes);
        assert_eq!(
            reply(req.handle, EIO),
            [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn bad_magic_and_short_requests_are_errors() {
        let mut b = Request {
            command: Command::Read,
            flags: 0,
            handle: [0; 8],
            offset: 0,
            length: 1,
        }
        .to_bytes();
        assert!(matches!(Request::parse(&b[..27]), Err(NbdError::Short(27))));
        b[0] ^= 1;
        assert!(matches!(Request::parse(&b), Err(NbdError::BadMagic(_))));
    }

    #[test]
    fn reads_inside_are_served_and_everything_else_refused() {
        let req = |command, offset, length| Request {
            command,
            flags: 0,
            handle: [9; 8],
            offset,
            length,
        };
        let size = 1 << 20;
        assert_eq!(
            answer(&req(Command::Read, size - 4096, 4096), size),
            Action::Read {
                offset: size - 4096,
                length: 4096
            }
        );
        assert_eq!(
            answer(&req(Command::Read, size - 4096, 4097), size),
            Action::Refuse {
                error: EINVAL,
                discard: 0
            }
        );
        assert_eq!(
            answer(&req(Command::Read, u64::MAX, 2), size),
            Action::Refuse {
                error: EINVAL,
                discard: 0
            }
        );
        assert_eq!(
            answer(&req(Command::Write, 0, 512), size),
            Action::Refuse {
                error: EPERM,
                discard: 512
            }
        );
        assert_eq!(answer(&req(Command::Flush, 0, 0), size), Action::Done);
        assert_eq!(
            answer(&req(Command::Disconnect, 0, 0), size),
            Action::Disconnect
        );
        assert_eq!(
            answer(&req(Command::Other(9), 0, 0), size),
            Action::Refuse {
                error: EINVAL,
                discard: 0
            }
        );
    }
}
