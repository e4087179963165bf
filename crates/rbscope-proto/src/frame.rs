//! Length-prefixed framing over any byte stream.

use serde::{de::DeserializeOwned, Serialize};
use std::io::{self, Read, Write};
use thiserror::Error;

/// The largest frame either side accepts (64 MiB).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Writes one message as a frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let body = postcard::to_stdvec(msg).map_err(|e| FrameError::Malformed(e.to_string()))?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf)?;
    w.flush()?;
    Ok(())
}

/// Reads one frame and decodes it. End of stream before a length is [`FrameError::Closed`].
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    // Grow with the data actually received: a peer that announces a large frame and sends
    // nothing must not make us allocate it.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    r.take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return Err(FrameError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("frame announced {len} bytes, got {}", body.len()),
        )));
    }
    postcard::from_bytes(&body).map_err(|e| FrameError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ClientMessage, Hello, PROTOCOL_VERSION};

    #[test]
    fn round_trip_and_garbage() {
        let mut buf = Vec::new();
        let hello = ClientMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client_version: "0.1.0".into(),
        });
        write_frame(&mut buf, &hello).unwrap();
        let back: ClientMessage = read_frame(&mut buf.as_slice()).unwrap();
        assert_eq!(back, hello);

        let empty: Result<ClientMessage, _> = read_frame(&mut &[][..]);
        assert!(matches!(empty, Err(FrameError::Closed)));
        let huge = [0xff, 0xff, 0xff, 0xff];
        let r: Result<ClientMessage, _> = read_frame(&mut &huge[..]);
        assert!(matches!(r, Err(FrameError::TooLarge(_))));
        // A large announced length with no data: an error, without allocating it.
        let liar = [0, 0, 0, 3];
        let r: Result<ClientMessage, _> = read_frame(&mut &liar[..]);
        assert!(matches!(r, Err(FrameError::Io(_))));
        let junk = [3, 0, 0, 0, 0xff, 0xfe, 0xfd];
        let r: Result<ClientMessage, _> = read_frame(&mut &junk[..]);
        assert!(matches!(r, Err(FrameError::Malformed(_))));
    }
}
