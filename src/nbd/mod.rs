//! Platform adapter: a read-only block device served from user space through the kernel's
//! nbd driver, as snapuserd serves a snapshot through dm-user on Android (which a stock kernel
//! lacks). The device is connected with the driver's ioctls over a socket pair
//! (`NBD_SET_BLKSIZE`, `NBD_SET_SIZE_BLOCKS`, `NBD_SET_FLAGS`, `NBD_SET_SOCK`, `NBD_DO_IT`),
//! no nbd-client and no handshake; [`wire`] says what each request gets, [`serve`] runs the
//! loop over any stream.

pub mod wire;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::cow::ReadAt;
use wire::{Action, NbdError, Request};

/// What a served connection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServeStats {
    /// Reads answered with data.
    pub reads: u64,
    /// Bytes of those reads.
    pub bytes_read: u64,
    /// Requests refused (writes, reads outside the device, unreadable blocks).
    pub refused: u64,
}

/// Answers the requests arriving on `stream` from `image` until the client disconnects or
/// closes the stream. A read the image fails gets `EIO` and serving goes on.
pub fn serve<S: Read + Write>(
    stream: &mut S,
    image: &(impl ReadAt + ?Sized),
) -> Result<ServeStats, NbdError> {
    let mut stats = ServeStats::default();
    let mut head = [0u8; wire::REQUEST_SIZE];
    let mut data = Vec::new();
    loop {
        match stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(stats),
            Err(e) => return Err(e.into()),
        }
        let req = Request::parse(&head)?;
        match wire::answer(&req, image.size()) {
            Action::Read { offset, length } => {
                data.resize(length as usize, 0);
                match image.read_at(offset, &mut data) {
                    Ok(()) => {
                        stream.write_all(&wire::reply(req.handle, 0))?;
                        stream.write_all(&data)?;
                        stats.reads += 1;
                        stats.bytes_read += u64::from(length);
                    }
                    Err(_) => {
                        stream.write_all(&wire::reply(req.handle, wire::EIO))?;
                        stats.refused += 1;
                    }
                }
            }
            Action::Done => stream.write_all(&wire::reply(req.handle, 0))?,
            Action::Refuse { error, discard } => {
                io::copy(
                    &mut (&mut *stream).take(u64::from(discard)),
                    &mut io::sink(),
                )?;
                stream.write_all(&wire::reply(req.handle, error))?;
                stats.refused += 1;
            }
            Action::Disconnect => return Ok(stats),
        }
        stream.flush()?;
    }
}

/// The nbd driver's ioctls: `_IO(0xab, n)`, the argument passed as an integer.
mod ioctls {
    const NBD: u8 = 0xab;
    nix::ioctl_write_int_bad!(set_sock, nix::request_code_none!(NBD, 0));
    nix::ioctl_write_int_bad!(set_blksize, nix::request_code_none!(NBD, 1));
    nix::ioctl_none!(do_it, NBD, 3);
    nix::ioctl_none!(clear_sock, NBD, 4);
    nix::ioctl_write_int_bad!(set_size_blocks, nix::request_code_none!(NBD, 7));
    nix::ioctl_none!(disconnect, NBD, 8);
    nix::ioctl_write_int_bad!(set_flags, nix::request_code_none!(NBD, 10));
}

fn ioctl_err(what: &str) -> impl Fn(nix::errno::Errno) -> NbdError + '_ {
    move |e| {
        NbdError::Io(io::Error::new(
            io::Error::from_raw_os_error(e as i32).kind(),
            format!("NBD {what}: {e}"),
        ))
    }
}

/// Connects the nbd device `device` (`/dev/nbdN`, free) to `image` as a read-only disk of
/// `block_size` blocks and serves it until the device is disconnected ([`disconnect`]); then
/// clears the device. `ready` is called once the device is configured, just before it starts.
pub fn serve_device(
    device: &Path,
    image: &(impl ReadAt + Sync + ?Sized),
    block_size: u32,
    ready: impl FnOnce(),
) -> Result<ServeStats, NbdError> {
    let size = image.size();
    let bs = u64::from(block_size);
    if bs == 0 || size % bs != 0 {
        return Err(NbdError::Io(io::Error::other(format!(
            "{size} bytes is not a whole number of {block_size}-byte blocks"
        ))));
    }
    let too_big = |what: &str| NbdError::Io(io::Error::other(format!("{what} too large for NBD")));
    let blocks = i32::try_from(size / bs).map_err(|_| too_big("block count"))?;
    let block_size = i32::try_from(block_size).map_err(|_| too_big("block size"))?;
    let dev = File::options().read(true).write(true).open(device)?;
    let fd = dev.as_raw_fd();
    let (ours, theirs) = UnixStream::pair()?;
    let flags = (wire::FLAG_HAS_FLAGS | wire::FLAG_READ_ONLY) as i32;
    // SAFETY: `fd` is an open nbd device for the calls' duration; each ioctl takes an integer
    // argument and no pointer, and the kernel takes its own reference to the socket.
    unsafe {
        ioctls::set_blksize(fd, block_size).map_err(ioctl_err("SET_BLKSIZE"))?;
        ioctls::set_size_blocks(fd, blocks).map_err(ioctl_err("SET_SIZE_BLOCKS"))?;
        ioctls::set_flags(fd, flags).map_err(ioctl_err("SET_FLAGS"))?;
        ioctls::set_sock(fd, theirs.as_raw_fd()).map_err(ioctl_err("SET_SOCK"))?;
    }
    drop(theirs);
    ready();
    std::thread::scope(|s| {
        let server = s.spawn(move || {
            let mut ours = ours;
            // Dropping our end when serving stops ends the kernel's connection (and NBD_DO_IT).
            serve(&mut ours, image)
        });
        // SAFETY: as above; NBD_DO_IT and NBD_CLEAR_SOCK take no argument. DO_IT returns when
        // the connection ends (a disconnect, or our end closed).
        let run = unsafe { ioctls::do_it(fd) }.map_err(ioctl_err("DO_IT"));
        // What nbd-client does after DO_IT; kernels that clear the device themselves may
        // refuse it, and the device is free either way.
        // SAFETY: as above.
        let _ = unsafe { ioctls::clear_sock(fd) };
        let stats = server
            .join()
            .map_err(|_| NbdError::Io(io::Error::other("the NBD server thread panicked")))??;
        run?;
        Ok(stats)
    })
}

/// Asks the kernel to disconnect the nbd device `device` (`NBD_DISCONNECT`): it sends the
/// server a disconnect, and the server's [`serve_device`] returns.
pub fn disconnect(device: &Path) -> Result<(), NbdError> {
    let dev = File::options().read(true).write(true).open(device)?;
    // SAFETY: `dev` is open for the call; NBD_DISCONNECT takes no argument.
    unsafe { ioctls::disconnect(dev.as_raw_fd()) }.map_err(ioctl_err("DISCONNECT"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::wire::{Command, EINVAL, EPERM, REPLY_SIZE};
    use super::*;

    fn request(command: Command, handle: u8, offset: u64, length: u32) -> Vec<u8> {
        Request {
            command,
            flags: 0,
            handle: [handle; 8],
            offset,
            length,
        }
        .to_bytes()
        .to_vec()
    }

    /// A client's requests over a real socket pair: reads come back with their handles and
    /// the image's bytes; a write's data is read off the stream and the write refused; a read
    /// past the end is refused; the disconnect ends serving.
    #[test]
    fn serves_reads_and_refuses_writes_over_a_socket() {
        let image: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let mut sent = request(Command::Read, 1, 4096, 8192);
        sent.extend(request(Command::Write, 2, 0, 3));
        sent.extend([0xee; 3]);
        sent.extend(request(Command::Read, 3, 65536 - 512, 1024));
        sent.extend(request(Command::Flush, 4, 0, 0));
        sent.extend(request(Command::Read, 5, 0, 512));
        sent.extend(request(Command::Disconnect, 6, 0, 0));
        client.write_all(&sent).unwrap();
        let stats = serve(&mut server, &image).unwrap();
        drop(server);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        let mut want = wire::reply([1; 8], 0).to_vec();
        want.extend(&image[4096..4096 + 8192]);
        want.extend(wire::reply([2; 8], EPERM));
        want.extend(wire::reply([3; 8], EINVAL));
        want.extend(wire::reply([4; 8], 0));
        want.extend(wire::reply([5; 8], 0));
        want.extend(&image[..512]);
        assert_eq!(got.len(), want.len());
        assert!(got == want);
        assert_eq!(
            stats,
            ServeStats {
                reads: 2,
                bytes_read: 8192 + 512,
                refused: 2
            }
        );
        assert_eq!(REPLY_SIZE, 16);
    }

    #[test]
    fn a_stream_out_of_step_is_an_error() {
        let (mut client, mut server) = UnixStream::pair().unwrap();
        let mut bad = request(Command::Read, 1, 0, 512);
        bad[3] = 0;
        client.write_all(&bad).unwrap();
        assert!(matches!(
            serve(&mut server, &vec![0u8; 4096]),
            Err(NbdError::BadMagic(_))
        ));
    }
}
