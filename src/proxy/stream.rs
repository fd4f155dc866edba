//! The client's side of a committed stream: relays the upstream's OpenAI chunks and, however
//! the stream ends, reports the permit's outcome and writes the request-log entry exactly once.
//! It is the second half of an attempt's permit lifecycle (the first is [`super::route`]).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::GraceEnd;
use crate::actors::supervisor::Runtime;
use crate::actors::target::{OutcomeKind, Permit};
use crate::cache::sse::Recorder;
use crate::observability::requestlog::{Draft, RequestLog};
use crate::observability::telemetry::InFlight;
use crate::providers::stream::{Frame, UpstreamStream};

/// The error event a stream still open at the end of the shutdown grace period ends with.
const SHUTTING_DOWN_EVENT: &str = concat!(
    r#"data: {"error":{"message":"llmux is shutting down: the stream was still open at the end "#,
    r#"of the shutdown grace period","type":"server_error","param":null,"code":"shutting_down"}}"#,
    "\n\n"
);

/// The body of a committed stream. Whatever way it ends — terminator, upstream failure (sent
/// to the client as an error event), the shutdown grace period ending (an error event too) or
/// the client going away (dropped) — its permit reports the outcome and its request-log entry
/// is written, exactly once. It holds the runtime it started on, so a reload cannot retire its
/// target under it.
pub struct ClientStream {
    head: VecDeque<Bytes>,
    upstream: UpstreamStream,
    permit: Option<Permit>,
    entry: Option<Draft>,
    log: Arc<RequestLog>,
    runtime: Arc<Runtime>,
    started: Instant,
    ended: bool,
    _in_flight: Option<InFlight>,
    grace_end: GraceEnd,
    /// A cache miss being recorded: stored if the stream completes. Boxed: most streams
    /// record nothing, and every open stream holds this struct (~340 bytes inline).
    recording: Option<Box<(Recorder, super::cache::Pending)>>,
    /// A Responses stream: its id (and translated conversation) remembered if it completes.
    conversation: Option<super::responses::StreamDone>,
    /// The gateway key's concurrency slot, held until the stream ends.
    _lease: Option<crate::tenancy::Lease>,
}

impl ClientStream {
    #[expect(
        clippy::too_many_arguments,
        reason = "one committed stream's parts, from its single caller"
    )]
    pub fn new(
        head: Vec<Bytes>,
        upstream: UpstreamStream,
        permit: Option<Permit>,
        entry: Draft,
        log: Arc<RequestLog>,
        runtime: Arc<Runtime>,
        started: Instant,
        in_flight: Option<InFlight>,
        grace_end: GraceEnd,
        store: Option<super::cache::Pending>,
        conversation: Option<super::responses::StreamDone>,
        lease: Option<crate::tenancy::Lease>,
    ) -> ClientStream {
        let mut recording =
            store.map(|p| Box::new((Recorder::new(p.endpoint, p.cache.max_entry_bytes()), p)));
        if let Some((r, _)) = recording.as_deref_mut() {
            head.iter().for_each(|b| r.feed(b));
        }
        ClientStream {
            recording,
            conversation,
            _lease: lease,
            head: head.into(),
            upstream,
            permit,
            entry: Some(entry),
            log,
            runtime,
            started,
            ended: false,
            _in_flight: in_flight,
            grace_end,
        }
    }

    /// The body to send: the frames read before commit, then the upstream's, each exactly as
    /// the client gets it.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
        futures_util::stream::unfold(self, |mut s| async move {
            if let Some(b) = s.head.pop_front() {
                return Some((Ok(b), s));
            }
            if s.ended {
                return None;
            }
            let frame = tokio::select! {
                f = s.upstream.next_frame() => f,
                _ = s.grace_end.ended() => {
                    tracing::warn!(trace_id = s.entry.as_ref().map_or("", |e| &*e.trace_id),
                        "stream still open at the end of the shutdown grace period: ended");
                    s.finish(OutcomeKind::Cancelled, 503, Some("llmux is shutting down".into()));
                    return Some((Ok(Bytes::from_static(SHUTTING_DOWN_EVENT.as_bytes())), s));
                }
            };
            match frame {
                Some(Frame::Data(b)) => {
                    if let Some((r, _)) = s.recording.as_deref_mut() {
                        r.feed(&b);
                    }
                    Some((Ok(b), s))
                }
                Some(Frame::Done(b)) => {
                    if let Some((mut r, pending)) = s.recording.take().map(|b| *b) {
                        r.feed(&b);
                        let usage = s.upstream.usage();
                        let used = usage.prompt_tokens + usage.completion_tokens;
                        if let Some(answer) = r.finish((used > 0).then_some(usage)) {
                            pending.store(answer, s.upstream.model().map(str::to_owned), usage);
                        }
                    }
                    if let Some(done) = s.conversation.take() {
                        done.complete(&s.upstream);
                    }
                    s.finish(OutcomeKind::Success, 200, None);
                    Some((Ok(b), s))
                }
                Some(Frame::Failed(b, e)) => {
                    tracing::warn!(trace_id = s.entry.as_ref().map_or("", |e| &*e.trace_id),
                        error = %e.message, "upstream stream failed after commit");
                    s.finish(OutcomeKind::from(&e), e.status, Some(e.message));
                    Some((Ok(b), s))
                }
                None => {
                    s.finish(OutcomeKind::Success, 200, None);
                    None
                }
            }
        })
    }

    fn finish(&mut self, kind: OutcomeKind, status: u16, error: Option<String>) {
        self.ended = true;
        let usage = self.upstream.usage();
        let used = usage.prompt_tokens + usage.completion_tokens;
        if let Some(p) = self.permit.take() {
            p.report(kind, (used > 0).then_some(used), error.clone());
        }
        if let Some(mut draft) = self.entry.take() {
            let entry = draft.get();
            entry.status = status;
            entry.error = error;
            entry.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
            entry.model_used = self.upstream.model().map(str::to_owned);
            entry.prompt_tokens = usage.prompt_tokens;
            entry.cached_tokens = usage.cached_tokens;
            entry.completion_tokens = usage.completion_tokens;
            entry.total_tokens = used;
            if let Some(last) = entry.attempts.last_mut() {
                last.status = status;
            }
            if let (Some(span), Some(r)) = (&entry.otel, self.upstream.finish_reason()) {
                span.record("gen_ai.response.finish_reasons", r);
            }
            self.log.finish(draft, &self.runtime.config.pricing);
        }
    }
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if !self.ended {
            // The client went away mid-stream: dropping the upstream closes its connection,
            // and the permit is released as cancelled. 499 as nginx logs it.
            self.permit.take();
            self.finish(
                OutcomeKind::Cancelled,
                499,
                Some("client closed the stream".into()),
            );
        }
    }
}
