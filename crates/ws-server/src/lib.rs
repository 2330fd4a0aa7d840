//! The server engine behind ws-echo (moved here from ws-echo; its handler API comes next).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing::{debug, warn};
use ws_proto::{Chunk, CloseCode, Connection, Event, MessageKind, Sender};
use ws_transport::IN_PLACE_MIN;

#[cfg(target_os = "linux")]
pub mod epoll;

/// Decrements the live-connection count when a connection task ends, however it ends.
pub struct LiveGuard(pub Arc<AtomicUsize>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How an echo session ended.
#[derive(Debug)]
pub enum End {
    /// The close handshake completed with this code.
    Closed(CloseCode),
    /// The peer broke the protocol.
    Failed(ws_proto::ProtocolError),
    /// The stream ended without a close frame.
    Disconnected,
}

/// Logs how a session ended: at debug when it ended normally, at warn when it failed.
pub fn log_end(
    peer: SocketAddr,
    result: Result<&End, &dyn std::fmt::Display>,
    read: u64,
    written: u64,
) {
    match result {
        Ok(End::Closed(code)) => debug!(%peer, code = code.0, read, written, "closed"),
        Ok(End::Failed(err)) => {
            warn!(%peer, code = err.close_code().0, read, written, "failed the connection: {err}");
        }
        Ok(End::Disconnected) => debug!(%peer, code = 1006, read, written, "peer went away"),
        Err(err) => warn!(%peer, read, written, "connection error: {err}"),
    }
}

/// What one pass over a connection's buffered events did.
pub struct Pass {
    /// How the session ended, if it did.
    pub end: Option<End>,
    /// Stopped at the high-water mark with events possibly left: flush, then pass again.
    pub more: bool,
}

/// Polls the events buffered in `conn` and queues their echoes, until an end (close, failure,
/// disconnection), the input runs out, or `high_water` bytes of output are queued. Both
/// engines echo through this one function.
///
/// `text_frame` holds a text frame that arrives in pieces until it is whole (at most
/// `max_frame_size`), or with compression a whole message (at most `max_message_size`).
///
/// `direct`, when given, is a vectored write to the transport (pending output, then payload;
/// returns bytes taken): binary payload of at least [`IN_PLACE_MIN`] bytes is offered to it
/// straight from the input buffer and copied into the output only if the transport does not
/// take it all.
pub fn echo_events(
    conn: &mut Connection,
    text_frame: &mut Vec<u8>,
    high_water: usize,
    mut direct: Option<impl FnMut(&[u8], &[u8]) -> usize>,
) -> Pass {
    if text_frame.capacity() > 64 << 10 && text_frame.is_empty() {
        *text_frame = Vec::new();
    }
    let compressed = conn.compression();
    let mut pass = Pass { end: None, more: false };
    while let Some((event, mut sender)) = conn.poll_event_with_sender() {
        // Send errors mean we already sent a close frame: nothing more goes out.
        match event {
            // Compressed messages are echoed whole, compressed again: their frames do not map
            // to the inflated data, and a message cut into many small fragments can stall
            // clients that count buffered frames.
            Event::Chunk(chunk) if compressed => {
                text_frame.extend_from_slice(chunk.data);
                if chunk.last {
                    let _ = sender.send_message(chunk.kind, text_frame);
                    text_frame.clear();
                }
            }
            Event::Chunk(chunk) => echo_chunk(&mut sender, &chunk, text_frame, direct.as_mut()),
            Event::Message(message) => {
                let _ = sender.send_message(message.kind(), message.as_bytes());
            }
            Event::Close(frame) => pass.end = Some(End::Closed(frame.code)),
            Event::Failed(err) => pass.end = Some(End::Failed(err)),
            Event::Disconnected => pass.end = Some(End::Disconnected),
            _ => {}
        }
        if pass.end.is_some() {
            break;
        }
        if conn.pending_output().len() >= high_water {
            pass.more = true;
            break;
        }
    }
    pass
}

/// Echoes one chunk, frame for frame: each echoed frame has the length and FIN bit of the
/// frame received, so a client's fragmentation is kept and a large frame streams through.
///
/// Binary frames are forwarded as they arrive. A text frame is echoed once it is whole: were
/// it streamed, invalid UTF-8 late in the frame could not be answered with a close frame
/// (1007), since nothing may interrupt a frame. Send errors mean a close frame was already
/// sent, after which nothing more goes out.
fn echo_chunk(
    sender: &mut Sender<'_>,
    chunk: &Chunk<'_>,
    text_frame: &mut Vec<u8>,
    direct: Option<&mut impl FnMut(&[u8], &[u8]) -> usize>,
) {
    match chunk.kind {
        MessageKind::Binary => {
            if chunk.frame_start {
                let _ = sender.begin_frame(MessageKind::Binary, chunk.fin, chunk.frame_len);
            }
            match direct {
                Some(write) if chunk.data.len() >= IN_PLACE_MIN => {
                    let _ = sender
                        .send_frame_data_via(chunk.data, |pending, data| write(pending, data));
                }
                _ if !chunk.data.is_empty() => {
                    let _ = sender.send_frame_data(chunk.data);
                }
                _ => {}
            }
        }
        MessageKind::Text if chunk.frame_start && chunk.frame_end => {
            let _ = sender.send_fragment(MessageKind::Text, chunk.data, chunk.fin);
        }
        MessageKind::Text => {
            text_frame.extend_from_slice(chunk.data);
            if chunk.frame_end {
                let _ = sender.send_fragment(MessageKind::Text, text_frame, chunk.fin);
                text_frame.clear();
            }
        }
    }
}
