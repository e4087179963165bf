//! One client connection: the versioned handshake of `rbscope-proto`, then requests answered
//! one by one until the client closes (a trace takes the connection over until it ends).

use super::queue::{ask, Work};
use super::{breakpoint, eval, trace, Handler, HeapRequest, STORED_WAIT};
use rbscope_proto::{
    mismatch_advice, read_frame, write_frame, AgentMessage, ClientMessage, FrameError, Welcome,
    PROTOCOL_VERSION,
};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Serves one connection. An error is a failed handshake or a broken connection.
pub(super) fn handle<H: Handler>(mut stream: UnixStream, handler: &H) -> Result<(), FrameError> {
    let hello = match read_frame::<_, ClientMessage>(&mut stream)? {
        ClientMessage::Hello(h) => h,
        _ => {
            write_frame(
                &mut stream,
                &AgentMessage::Refused("the first message must be Hello".into()),
            )?;
            return Err(FrameError::Malformed("no hello".into()));
        }
    };
    if hello.protocol_version != PROTOCOL_VERSION {
        let advice = mismatch_advice(hello.protocol_version, PROTOCOL_VERSION);
        write_frame(&mut stream, &AgentMessage::Refused(advice))?;
        return Err(FrameError::Malformed("protocol mismatch".into()));
    }
    write_frame(
        &mut stream,
        &AgentMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            // The workspace's one version: the agent's and this crate's are the same.
            agent_version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            ruby_version: handler.ruby_version(),
        }),
    )?;
    loop {
        let msg = match read_frame::<_, ClientMessage>(&mut stream) {
            Ok(m) => m,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let reply = match msg {
            ClientMessage::Status => AgentMessage::Status(handler.status()),
            ClientMessage::Hello(_) => AgentMessage::Error("already said hello".into()),
            ClientMessage::Stacks { wait_ms } => {
                // Every thread's stack, read by the agent's Ruby thread.
                let asked = Instant::now();
                let stacks = |deadline, reply| Work::Stacks {
                    asked,
                    deadline,
                    reply,
                };
                ask(handler.queue(), wait_ms, stacks, |m| m)
            }
            ClientMessage::Trace(req) => return trace::serve(stream, handler, req),
            ClientMessage::Break(req) => {
                let req = rbscope_proto::PointRequest {
                    at: req,
                    every_ms: 0,
                    values: Vec::new(),
                };
                return breakpoint::serve(stream, handler, req);
            }
            ClientMessage::Point(req) => return breakpoint::serve(stream, handler, req),
            ClientMessage::Detach => AgentMessage::Error("nothing is being traced".into()),
            ClientMessage::Eval(req) => eval::run(handler, req, &mut stream),
            ClientMessage::Cancel => AgentMessage::Error("no eval is running".into()),
            ClientMessage::Memory { wait_ms } => {
                let memory = |deadline, reply| Work::Memory { deadline, reply };
                ask(handler.queue(), wait_ms, memory, |m| m)
            }
            ClientMessage::HeapDump(req) => handler.heap(HeapRequest::Dump(req)),
            ClientMessage::HeapCount(req) => handler.heap(HeapRequest::Count(req)),
            ClientMessage::HeapTrack { on, wait_ms } => {
                handler.heap(HeapRequest::Track { on, wait_ms })
            }
            ClientMessage::Snapshot(request) => {
                // Live snapshots, taken by the agent's Ruby thread.
                let (asked, wait_ms) = (Instant::now(), request.wait_ms);
                let snapshot = |deadline, reply| Work::Snapshot {
                    request,
                    asked,
                    deadline,
                    reply,
                };
                let answer = ask(handler.queue(), wait_ms, snapshot, |m| m);
                // The ids go back once their snapshots are in the store.
                if matches!(answer, AgentMessage::Snapshots(_)) {
                    handler.stored(STORED_WAIT);
                }
                answer
            }
        };
        write_frame(&mut stream, &reply)?;
    }
}
