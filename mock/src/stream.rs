//! Server-sent-event bodies: turns a provider's frames into a timed body
//! stream honouring `chunk_interval_ms`, `stream_fail_after` and
//! `stream_fail_mode`, and carries the [`DisconnectGuard`] that counts a client
//! hanging up before the stream's end.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{self, Stream};

use super::state::DisconnectGuard;
use super::{Behavior, StreamFailMode};

/// The frames of one streamed answer, already encoded.
pub struct StreamPlan {
    /// Sent with the headers (`message_start`, role delta, …).
    pub head: Vec<Vec<u8>>,
    /// Content frames, each preceded by `chunk_interval_ms`.
    pub content: Vec<Vec<u8>>,
    /// Sent right after the last content frame (finish, usage, `[DONE]`).
    pub tail: Vec<Vec<u8>>,
    /// The provider's error event, for [`StreamFailMode::ErrorEvent`].
    pub error_event: Vec<u8>,
}

enum Step {
    Send(Duration, Bytes),
    /// Close the connection without a terminating chunk.
    Abort,
}

fn push(steps: &mut Vec<Step>, delay: Duration, frame: Vec<u8>) {
    if delay.is_zero() {
        // Coalesce frames sent back to back into one write.
        if let Some(Step::Send(_, prev)) = steps.last_mut() {
            let mut joined = Vec::with_capacity(prev.len() + frame.len());
            joined.extend_from_slice(prev);
            joined.extend_from_slice(&frame);
            *prev = Bytes::from(joined);
            return;
        }
    }
    steps.push(Step::Send(delay, Bytes::from(frame)));
}

impl StreamPlan {
    fn steps(self, b: &Behavior) -> Vec<Step> {
        let interval = Duration::from_millis(b.chunk_interval_ms);
        let mut steps = Vec::with_capacity(self.content.len() + 3);
        for f in self.head {
            push(&mut steps, Duration::ZERO, f);
        }
        let fail_at = b.stream_fail_after.map(|n| n.min(self.content.len()));
        for (i, f) in self.content.into_iter().enumerate() {
            if fail_at == Some(i) {
                break;
            }
            push(&mut steps, interval, f);
        }
        if fail_at.is_some() {
            match b.stream_fail_mode {
                StreamFailMode::Drop => steps.push(Step::Abort),
                StreamFailMode::ErrorEvent => push(&mut steps, Duration::ZERO, self.error_event),
                StreamFailMode::NoTerminator => {}
            }
        } else {
            for f in self.tail {
                push(&mut steps, Duration::ZERO, f);
            }
        }
        steps
    }

    /// The body stream. `guard` counts a disconnect if the stream is dropped
    /// before it ends (or aborts on purpose).
    pub fn into_body(
        self,
        b: &Behavior,
        guard: DisconnectGuard,
    ) -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
        let steps = self.steps(b).into_iter();
        stream::unfold((steps, guard), |(mut steps, mut guard)| async move {
            match steps.next() {
                Some(Step::Send(delay, bytes)) => {
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Some((Ok(bytes), (steps, guard)))
                }
                Some(Step::Abort) => {
                    // Let actix flush what was already produced, then fail the
                    // body: actix closes the connection without the final
                    // zero-length chunk.
                    tokio::task::yield_now().await;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    guard.disarm();
                    Some((
                        Err(io::Error::new(
                            io::ErrorKind::ConnectionAborted,
                            "llmux-mock: stream dropped on purpose",
                        )),
                        (steps, guard),
                    ))
                }
                None => {
                    guard.disarm();
                    None
                }
            }
        })
    }
}

/// A body that fails before producing anything: actix then closes the
/// connection without sending the response head (see `server::reset`).
pub fn failing_body() -> impl Stream<Item = Result<Bytes, io::Error>> + 'static {
    stream::once(async {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "llmux-mock: connection reset on purpose",
        ))
    })
}
