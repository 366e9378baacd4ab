//! What the `nbd_serve` fuzz target does with an input: the input is what the client sends;
//! the server answers from a 64 KiB image until the stream ends, a disconnect, or an error. A
//! panic is a bug, and so is a reply stream that breaks the protocol: every reply is a simple
//! reply with the handle of the request it answers, in order, and a successful read's data is
//! the image's bytes at the request's offset.

use std::io::{Read, Write};

use abupdate::nbd::wire::{self, Action, Request, REQUEST_SIZE};

/// The client's bytes in, the server's bytes out.
struct Duplex<'a> {
    input: &'a [u8],
    output: Vec<u8>,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn run(data: &[u8]) {
    let image: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 31 % 253) as u8).collect();
    let mut duplex = Duplex {
        input: data,
        output: Vec::new(),
    };
    let result = abupdate::nbd::serve(&mut duplex, &image);
    // Only a request out of step (a bad magic) ends serving with an error.
    if let Err(e) = &result {
        assert!(matches!(e, wire::NbdError::BadMagic(_)), "{e}");
    }
    // Replay the requests as the server must have seen them and check each reply.
    let mut out = duplex.output.as_slice();
    let mut input = data;
    while input.len() >= REQUEST_SIZE {
        let Ok(req) = Request::parse(input) else {
            break;
        };
        input = &input[REQUEST_SIZE..];
        let action = wire::answer(&req, image.len() as u64);
        if action == Action::Disconnect {
            break;
        }
        if let Action::Refuse { discard, .. } = action {
            // Write data cut short by the end of the stream is still answered.
            input = input.get(discard as usize..).unwrap_or_default();
        }
        assert!(
            out.len() >= wire::REPLY_SIZE,
            "request {req:?} not answered"
        );
        let (head, rest) = out.split_at(wire::REPLY_SIZE);
        let want_error = match action {
            Action::Refuse { error, .. } => error,
            _ => 0,
        };
        assert_eq!(head, wire::reply(req.handle, want_error));
        out = rest;
        if let Action::Read { offset, length } = action {
            let (got, rest) = out.split_at(length as usize);
            assert_eq!(
                got,
                &image[offset as usize..offset as usize + length as usize]
            );
            out = rest;
        }
    }
    assert!(
        out.is_empty(),
        "{} bytes of replies to no request",
        out.len()
    );
}
