//! Small helpers shared by the handshake code.

use std::future::Future;
use std::time::Instant;

use futures_lite::{AsyncWrite, AsyncWriteExt, future};
use ws_proto::MaskKeySource;

use crate::runtime::{Runtime, sleep};

/// Runs `fut` until `deadline` (on `runtime`'s timers); `None` if the deadline came first.
pub(crate) async fn with_deadline<T>(
    runtime: &dyn Runtime,
    deadline: Instant,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let timer = runtime.new_timer(deadline);
    future::or(async { Some(fut.await) }, async {
        sleep(timer).await;
        None
    })
    .await
}

/// Closes `stream`, giving up at `deadline`. Errors are ignored.
pub(crate) async fn close_by<S: AsyncWrite + Unpin>(
    stream: &mut S,
    runtime: &dyn Runtime,
    deadline: Instant,
) {
    let _ = with_deadline(runtime, deadline, stream.close()).await;
}

/// Fills `buf` from the operating system's random source.
///
/// # Panics
///
/// If the operating system has no random source: RFC 6455 §5.3 requires masking keys from "a
/// strong source of entropy", and there is no safe fallback.
pub(crate) fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// Masking keys from the OS random source, fetched 64 keys at a time.
pub(crate) struct RandomKeys {
    buf: [u8; 256],
    pos: usize,
}

impl RandomKeys {
    pub(crate) fn new() -> Self {
        Self { buf: [0; 256], pos: 256 }
    }
}

impl MaskKeySource for RandomKeys {
    fn next_key(&mut self) -> [u8; 4] {
        if self.pos == self.buf.len() {
            random_bytes(&mut self.buf);
            self.pos = 0;
        }
        let key = [
            self.buf[self.pos],
            self.buf[self.pos + 1],
            self.buf[self.pos + 2],
            self.buf[self.pos + 3],
        ];
        self.pos += 4;
        key
    }
}
