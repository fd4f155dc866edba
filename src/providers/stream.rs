//! Upstream SSE streams, turned into OpenAI `chat.completion.chunk` frames.
//!
//! A stream is read in two phases. Before commit ([`UpstreamStream::prime`]) frames are held
//! back until the first one that carries content (or the terminator), so that an error event,
//! a stall or a stream that ends early is an ordinary failed attempt and the router can still
//! fall back. After commit ([`UpstreamStream::next_frame`]) frames flow one by one as they
//! arrive; a failure then ends the stream with an OpenAI-shaped error event, never a silent
//! truncation.
//!
//! Memory per stream is bounded whatever the upstream sends: one SSE event (all its lines up
//! to the blank line that ends it) may hold at most [`MAX_EVENT_BYTES`], and the frames held
//! back before commit at most [`MAX_HELD_BYTES`]; past either the stream fails like a broken one.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::anthropic::{StreamOutput as AnthropicOutput, StreamTranslator};
use super::openai::UsageProbe;
use super::{AttemptError, FailureClass, Usage};

/// Largest SSE event llmux buffers while waiting for its end. Real chunks are a few hundred
/// bytes; even a whole long answer sent as one event stays well below this.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Largest total of frames held back before the first content (role chunks, pings, metadata).
pub const MAX_HELD_BYTES: usize = 1024 * 1024;

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<ReadError>>> + Send>>;

/// Why reading the upstream body stopped.
#[derive(Debug)]
enum ReadError {
    Http(reqwest::Error),
    /// An event grew past [`MAX_EVENT_BYTES`] without ending.
    EventTooLarge,
    /// A binary event-stream frame (Bedrock) did not decode.
    Frame(String),
}

impl From<super::bedrock::stream::FrameError> for ReadError {
    fn from(e: super::bedrock::stream::FrameError) -> ReadError {
        use super::bedrock::stream::FrameError;
        match e {
            FrameError::Http(e) => ReadError::Http(e),
            FrameError::TooLarge => ReadError::EventTooLarge,
            FrameError::Bad(m) => ReadError::Frame(m),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The root cause only: reqwest's own message names the URL.
            ReadError::Http(e) => f.write_str(&super::root_cause(e)),
            ReadError::EventTooLarge => {
                write!(f, "an event exceeded {MAX_EVENT_BYTES} bytes")
            }
            ReadError::Frame(m) => write!(f, "malformed event-stream frame: {m}"),
        }
    }
}

/// Counts the bytes of the SSE event being received, across chunk boundaries. Lines end with
/// CR, LF or CRLF; an empty line ends the event.
#[derive(Default)]
struct EventBound {
    line_len: usize,
    event_len: usize,
    after_cr: bool,
    failed: bool,
}

impl EventBound {
    /// Feeds a chunk; `false` once the current event is larger than `limit`.
    fn feed(&mut self, chunk: &[u8], limit: usize) -> bool {
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    if self.line_len == 0 {
                        self.event_len = 0;
                    }
                    self.line_len = 0;
                    self.after_cr = b == b'\r';
                }
                _ => {
                    self.after_cr = false;
                    self.line_len += 1;
                    self.event_len += 1;
                    if self.event_len > limit {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// `body` with every event bounded to `limit` bytes: past it, one error and then the end.
fn bounded<S>(body: S, limit: usize) -> impl Stream<Item = Result<Bytes, ReadError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>>,
{
    body.scan(EventBound::default(), move |st, item| {
        let out = match item {
            _ if st.failed => None,
            Ok(chunk) if st.feed(&chunk, limit) => Some(Ok(chunk)),
            Ok(_) => {
                st.failed = true;
                Some(Err(ReadError::EventTooLarge))
            }
            Err(e) => Some(Err(ReadError::Http(e))),
        };
        futures_util::future::ready(out)
    })
}

/// How a provider's SSE events become OpenAI chunks (chosen by
/// [`super::Provider::framing`]).
pub enum Framing {
    /// OpenAI, Azure and compatible servers: frames pass through. `drop_usage_chunk`: llmux
    /// asked the upstream for usage the client did not ask for, so the usage-only chunk is read
    /// but not forwarded.
    OpenAi { drop_usage_chunk: bool },
    /// Anthropic's typed events, translated one by one.
    Anthropic(Box<StreamTranslator>),
    /// Bedrock's ConverseStream: binary event-stream frames, decoded and translated.
    Bedrock(Box<super::bedrock::StreamTranslator>),
    /// A native Responses API stream (`event: <type>` frames, no `[DONE]`): frames pass
    /// through; the stream ends with `response.completed` / `response.incomplete`.
    Responses,
    /// Gemini's `data:` frames (no terminator: the body's end completes the stream).
    Gemini(Box<super::gemini::StreamTranslator>),
}

pub struct UpstreamStream {
    events: Events,
    framing: Framing,
    idle: Duration,
    finished: bool,
    usage: Usage,
    model: Option<String>,
    /// The wait a rate-limit error inside the stream carries (it has no headers to hint one).
    rate_limit_wait: Option<Duration>,
    /// The last finish reason a chunk carried (OpenAI's terms), for traces.
    finish_reason: Option<Box<str>>,
    /// Responses API streams: the response's id (for affinity) and the last sequence number.
    response_id: Option<String>,
    last_sequence: Option<u64>,
    /// A chat stream translated into Responses API events for the client.
    translate: Option<Box<super::responses::EventStream>>,
    /// The translation's opening events, sent before the first frame.
    opening: Vec<Bytes>,
}

/// What the client receives next after commit.
pub enum Frame {
    /// An SSE frame to forward.
    Data(Bytes),
    /// The stream ended properly; this is its final frame (`data: [DONE]`).
    Done(Bytes),
    /// The stream broke; forward this error frame, then close.
    Failed(Bytes, AttemptError),
}

const DONE: &[u8] = b"data: [DONE]\n\n";

/// The `data` of each SSE event in `frames` (whole events, as llmux relays them: `data:` lines
/// joined by newlines; comments and other fields skipped), in order.
pub fn data_events(frames: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut data = String::new();
    let mut pending = false;
    for line in frames.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            if pending {
                out.push(std::mem::take(&mut data));
                pending = false;
            }
        } else if let Some(value) = line.strip_prefix("data:") {
            if pending {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
            pending = true;
        }
    }
    if pending {
        out.push(data);
    }
    out
}

/// A typed SSE frame, as the Responses API sends them.
fn typed_frame(event: &str, data: &str) -> Bytes {
    let mut b = Vec::with_capacity(event.len() + data.len() + 16);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    b.extend_from_slice(data.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.into()
}

/// The failure a Responses API `error` event or `response.failed` describes.
fn responses_error(v: &Value) -> AttemptError {
    let e = v.pointer("/response/error").unwrap_or(v);
    let code = e
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("server_error");
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("the upstream response failed");
    let (status, class, kind) = match code {
        "rate_limit_exceeded" => (429, FailureClass::RateLimited, "rate_limit_error"),
        _ => (502, FailureClass::Server, "server_error"),
    };
    let mut err = AttemptError::new(
        status,
        class,
        kind,
        format!("upstream stream failed: {message}"),
    );
    err.code = Some(code.to_owned());
    err
}

fn frame(data: &str) -> Bytes {
    let mut b = Vec::with_capacity(data.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(data.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.into()
}

fn error_frame(e: &AttemptError) -> Bytes {
    let v =
        json!({"error": {"message": e.message, "type": e.kind, "param": e.param, "code": e.code}});
    frame(&v.to_string())
}

fn broken(message: String) -> AttemptError {
    AttemptError::new(502, FailureClass::Connection, "server_error", message)
}

#[derive(Deserialize)]
struct ChunkProbe<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceProbe<'a>>,
    #[serde(default)]
    usage: Option<UsageProbe>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChoiceProbe<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaProbe<'a>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    finish_reason: Option<&'a str>,
}

#[derive(Deserialize)]
struct DeltaProbe<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Vec<Value>>,
    #[serde(default)]
    function_call: Option<Value>,
    #[serde(default, borrow)]
    refusal: Option<std::borrow::Cow<'a, str>>,
}

impl ChunkProbe<'_> {
    fn has_content(&self) -> bool {
        self.choices.iter().any(|c| {
            c.finish_reason.is_some()
                || c.text.as_deref().is_some_and(|t| !t.is_empty())
                || c.delta.as_ref().is_some_and(|d| {
                    d.content.as_deref().is_some_and(|t| !t.is_empty())
                        || d.refusal.as_deref().is_some_and(|t| !t.is_empty())
                        || d.tool_calls.as_ref().is_some_and(|t| !t.is_empty())
                        || d.function_call.is_some()
                })
        })
    }
}

/// What one upstream event means, in the phase-independent sense.
enum Step {
    /// Frames to emit, and whether any of them carries content.
    Frames(Vec<Bytes>, bool),
    Done(Vec<Bytes>),
    Error(AttemptError),
}

impl UpstreamStream {
    /// `idle` bounds the wait for each event.
    pub fn new(resp: reqwest::Response, idle: Duration, framing: Framing) -> UpstreamStream {
        let events: Events = match framing {
            Framing::Bedrock(_) => Box::pin(
                super::bedrock::stream::events(Box::pin(resp.bytes_stream()), MAX_EVENT_BYTES)
                    .map(|r| r.map_err(|e| EventStreamError::Transport(e.into()))),
            ),
            Framing::Gemini(_) => Box::pin(
                super::gemini::sse_data_lines(bounded(resp.bytes_stream(), MAX_EVENT_BYTES))
                    .eventsource(),
            ),
            _ => Box::pin(bounded(resp.bytes_stream(), MAX_EVENT_BYTES).eventsource()),
        };
        UpstreamStream {
            events,
            framing,
            idle,
            finished: false,
            usage: Usage::default(),
            model: None,
            rate_limit_wait: None,
            finish_reason: None,
            response_id: None,
            last_sequence: None,
            translate: None,
            opening: Vec::new(),
        }
    }

    /// Translates this chat stream into Responses API events (`events` opened with the
    /// response's echo): the client sees `response.created` … `response.completed`.
    pub fn into_responses(mut self, mut events: super::responses::EventStream) -> UpstreamStream {
        self.opening = events.start();
        self.translate = Some(Box::new(events));
        self
    }

    /// The translated stream's state (its response so far), for storing the conversation.
    pub fn translated(&self) -> Option<&super::responses::EventStream> {
        self.translate.as_deref()
    }

    /// A native Responses stream's response id, once `response.created` named it.
    pub fn response_id(&self) -> Option<&str> {
        self.response_id.as_deref()
    }

    /// The error frame that ends a committed stream, in the client's format.
    fn failure_frame(&mut self, e: &AttemptError) -> Bytes {
        if let Some(t) = &mut self.translate {
            let code = e.code.as_deref().unwrap_or("server_error");
            return t.fail(code, &e.message).concat().into();
        }
        if matches!(self.framing, Framing::Responses) {
            let seq = self.last_sequence.map_or(0, |s| s + 1);
            let v = json!({"type": "error", "sequence_number": seq,
                "code": e.code.as_deref().unwrap_or("server_error"), "message": e.message, "param": e.param});
            return typed_frame("error", &v.to_string());
        }
        error_frame(e)
    }

    /// What a rate-limit error event means for the target and the client's `Retry-After`
    /// (see [`super::retry_after_for`]).
    pub fn with_rate_limit_wait(mut self, wait: Option<Duration>) -> UpstreamStream {
        self.rate_limit_wait = wait;
        self
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The finish reason the stream ended with, once a chunk has carried one.
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason.as_deref()
    }

    /// Reads the next upstream event within the idle timeout and interprets it (translated
    /// into Responses events when this is a translated stream).
    async fn step(&mut self, wait: Duration) -> Step {
        let step = match self.read_step(wait).await {
            Step::Error(mut e) => {
                if e.class == FailureClass::RateLimited && e.retry_after.is_none() {
                    e.retry_after = self.rate_limit_wait;
                }
                Step::Error(e)
            }
            step => step,
        };
        let Some(t) = &mut self.translate else {
            return step;
        };
        let mut out = std::mem::take(&mut self.opening);
        let mut translate = |frames: Vec<Bytes>| {
            for f in frames {
                out.extend(t.feed(&f));
            }
        };
        match step {
            Step::Frames(frames, content) => {
                translate(frames);
                Step::Frames(out, content)
            }
            Step::Done(frames) => {
                translate(frames);
                Step::Done(out)
            }
            error => error,
        }
    }

    async fn read_step(&mut self, wait: Duration) -> Step {
        let event = match tokio::time::timeout(wait, self.events.next()).await {
            Err(_) => {
                return Step::Error(AttemptError::new(
                    504,
                    FailureClass::Timeout,
                    "timeout_error",
                    format!("upstream stream sent nothing for {} ms", wait.as_millis()),
                ))
            }
            Ok(None) => {
                if let Framing::Gemini(t) = &mut self.framing {
                    let mut out = Vec::with_capacity(2);
                    t.end(&mut out);
                    return translated_step(out, false);
                }
                return Step::Error(broken("upstream stream ended before its terminator".into()));
            }
            Ok(Some(Err(EventStreamError::Transport(ReadError::EventTooLarge)))) => {
                return Step::Error(AttemptError::bad_upstream(
                    "upstream_event_too_large",
                    format!(
                        "upstream stream sent an event larger than {MAX_EVENT_BYTES} bytes \
                         without ending it"
                    ),
                ))
            }
            Ok(Some(Err(e))) => return Step::Error(broken(format!("upstream stream broke: {e}"))),
            Ok(Some(Ok(ev))) => ev,
        };
        match &mut self.framing {
            Framing::OpenAi { drop_usage_chunk } => {
                let data = event.data.trim();
                if data == "[DONE]" {
                    return Step::Done(vec![Bytes::from_static(DONE)]);
                }
                let Ok(probe) = serde_json::from_str::<ChunkProbe<'_>>(data) else {
                    return Step::Error(broken("upstream sent a malformed stream event".into()));
                };
                if let Some(err) = &probe.error {
                    let status = err.get("code").and_then(Value::as_u64).unwrap_or(502) as u16;
                    let status = if (400..600).contains(&status) {
                        status
                    } else {
                        502
                    };
                    let mut e = super::openai::error_from_value(status, &json!({ "error": err }));
                    // An error inside a 200 stream is the upstream's failure, not the client's.
                    if e.class == FailureClass::Client {
                        e.class = FailureClass::Server;
                    }
                    return Step::Error(e);
                }
                if self.model.is_none() {
                    self.model = probe.model.clone().filter(|m| !m.is_empty());
                }
                if let Some(r) = probe.choices.iter().find_map(|c| c.finish_reason) {
                    self.finish_reason = Some(r.into());
                }
                if let Some(u) = &probe.usage {
                    self.usage = u.usage();
                    if *drop_usage_chunk && probe.choices.is_empty() {
                        return Step::Frames(Vec::new(), false);
                    }
                }
                Step::Frames(vec![frame(data)], probe.has_content())
            }
            Framing::Responses => self.responses_event(&event.event, &event.data),
            Framing::Gemini(t) => {
                let had = t.has_content();
                let mut out = Vec::with_capacity(2);
                t.on_data(&event.data, &mut out);
                self.usage = t.usage();
                if self.model.is_none() {
                    self.model = t.model().map(str::to_owned);
                }
                if let Some(r) = t.finish_reason() {
                    self.finish_reason = Some(r.into());
                }
                translated_step(out, !had && t.has_content())
            }
            Framing::Anthropic(t) => {
                let had = t.has_content();
                let mut out = Vec::with_capacity(2);
                t.on_event(&event.event, &event.data, &mut out);
                self.usage = t.usage();
                if self.finish_reason.is_none() {
                    self.finish_reason = t.finish_reason().map(Into::into);
                }
                let mut frames = Vec::with_capacity(out.len());
                for o in out {
                    match o {
                        AnthropicOutput::Chunk(c) => frames.push(frame(&c)),
                        AnthropicOutput::Done => {
                            frames.push(Bytes::from_static(DONE));
                            return Step::Done(frames);
                        }
                        AnthropicOutput::Error(e) => {
                            let v: Value = serde_json::from_str(&e).unwrap_or(Value::Null);
                            let mut err = super::openai::error_from_value(502, &v);
                            err.class = FailureClass::Server;
                            return Step::Error(err);
                        }
                    }
                }
                Step::Frames(frames, !had && t.has_content())
            }
            Framing::Bedrock(t) => {
                let had = t.has_content();
                let mut out = Vec::with_capacity(2);
                t.on_event(&event.id, &event.event, &event.data, &mut out);
                self.usage = t.usage();
                // Converse streams never name the model: it is the one in the URL.
                if self.model.is_none() {
                    self.model = Some(t.model().to_owned());
                }
                if let Some(r) = t.finish_reason() {
                    self.finish_reason = Some(r.into());
                }
                translated_step(out, !had && t.has_content())
            }
        }
    }

    /// One event of a native Responses stream: passed through as it came; content is text,
    /// refusal or function-call arguments; `response.completed`/`incomplete` end it with its
    /// usage; `error`/`response.failed` are failures (fallback before commit).
    fn responses_event(&mut self, event: &str, data: &str) -> Step {
        let data = data.trim();
        if data == "[DONE]" {
            return Step::Done(Vec::new());
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return Step::Error(broken("upstream sent a malformed stream event".into()));
        };
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .unwrap_or(event)
            .to_owned();
        if let Some(n) = v.get("sequence_number").and_then(Value::as_u64) {
            self.last_sequence = Some(n);
        }
        let frame = || typed_frame(&kind, data);
        match kind.as_str() {
            "error" | "response.failed" => Step::Error(responses_error(&v)),
            "response.created" | "response.in_progress" => {
                if let Some(r) = v.get("response") {
                    if self.response_id.is_none() {
                        self.response_id = r.get("id").and_then(Value::as_str).map(str::to_owned);
                    }
                    if self.model.is_none() {
                        self.model = r.get("model").and_then(Value::as_str).map(str::to_owned);
                    }
                }
                Step::Frames(vec![frame()], false)
            }
            "response.completed" | "response.incomplete" => {
                if let Some(u) = v.pointer("/response/usage") {
                    if let Ok(u) = UsageProbe::deserialize(u) {
                        self.usage = u.usage();
                    }
                }
                Step::Done(vec![frame()])
            }
            "response.output_text.delta"
            | "response.refusal.delta"
            | "response.function_call_arguments.delta"
            | "response.function_call_arguments.done"
            | "response.output_text.done" => Step::Frames(vec![frame()], true),
            _ => Step::Frames(vec![frame()], false),
        }
    }

    /// Reads until the first content (or the terminator), within `first`. On success returns the
    /// frames held back so far; the caller commits and sends them.
    pub async fn prime(&mut self, first: Duration) -> Result<Vec<Bytes>, AttemptError> {
        let deadline = tokio::time::Instant::now() + first;
        let mut held: Vec<Bytes> = Vec::new();
        let mut held_bytes = 0;
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            if wait.is_zero() {
                return Err(AttemptError::timeout(first));
            }
            match self.step(wait.min(self.idle)).await {
                Step::Frames(frames, content) => {
                    held_bytes += frames.iter().map(Bytes::len).sum::<usize>();
                    held.extend(frames);
                    if content {
                        return Ok(held);
                    }
                    if held_bytes > MAX_HELD_BYTES {
                        return Err(AttemptError::bad_upstream(
                            "upstream_event_too_large",
                            format!(
                                "upstream stream sent more than {MAX_HELD_BYTES} bytes \
                                 before any content"
                            ),
                        ));
                    }
                }
                Step::Done(frames) => {
                    held.extend(frames);
                    self.finished = true;
                    return Ok(held);
                }
                Step::Error(e) => return Err(e),
            }
        }
    }

    /// The next frame after commit; `None` once the stream has ended.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if self.finished {
                return None;
            }
            match self.step(self.idle).await {
                Step::Frames(mut frames, _) => match frames.len() {
                    0 => continue,
                    1 => return frames.pop().map(Frame::Data),
                    _ => return Some(Frame::Data(frames.concat().into())),
                },
                Step::Done(frames) => {
                    self.finished = true;
                    return Some(Frame::Done(frames.concat().into()));
                }
                Step::Error(e) => {
                    self.finished = true;
                    return Some(Frame::Failed(self.failure_frame(&e), e));
                }
            }
        }
    }
}

/// A Gemini translator's outputs as one step.
/// One tool call of an OpenAI `chat.completion.chunk` delta, as the translating providers'
/// streams write it (`id`, `type` and `name` only on a call's first delta).
#[derive(serde::Serialize)]
pub struct ToolCallOut<'a> {
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    pub function: FunctionOut<'a>,
}

#[derive(serde::Serialize)]
pub struct FunctionOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    pub arguments: &'a str,
}

/// What a translator (Gemini, Bedrock) made of one upstream event (or of the body's end).
#[derive(Debug)]
pub enum StreamOutput {
    /// A `chat.completion.chunk` JSON, to send as `data: …`.
    Chunk(String),
    /// The stream is complete: send `data: [DONE]`.
    Done,
    /// The stream failed (an error event or frame, a malformed event, an early end).
    Error(AttemptError),
}

/// A translator's outputs as a [`Step`]; `content`: whether they carry the first content.
fn translated_step(out: Vec<StreamOutput>, content: bool) -> Step {
    let mut frames = Vec::with_capacity(out.len());
    for o in out {
        match o {
            StreamOutput::Chunk(c) => frames.push(frame(&c)),
            StreamOutput::Done => {
                frames.push(Bytes::from_static(DONE));
                return Step::Done(frames);
            }
            StreamOutput::Error(e) => return Step::Error(e),
        }
    }
    Step::Frames(frames, content)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(chunks: &[&[u8]], limit: usize) -> bool {
        let mut b = EventBound::default();
        chunks.iter().all(|c| b.feed(c, limit))
    }

    #[test]
    fn events_of_any_count_pass_when_each_is_small() {
        let event = b"data: {\"x\":1}\n\n";
        let many: Vec<&[u8]> = std::iter::repeat_n(&event[..], 10_000).collect();
        assert!(feed_all(&many, 64));
        // CRLF and CR line ends, split anywhere.
        assert!(feed_all(
            &[b"data: 0123456789\r", b"\n\r\ndata: 0123456789\r\r"],
            20
        ));
        // Several lines of one event add up; the blank line resets.
        assert!(!feed_all(&[b"data: 0123456789\ndata: 0123456789\n"], 20));
        assert!(feed_all(&[b"data: 0123456789\n\ndata: 0123456789\n\n"], 20));
    }

    #[test]
    fn an_endless_line_is_cut() {
        let chunk = [b'a'; 4096];
        let mut b = EventBound::default();
        let fed = (0..1000)
            .take_while(|_| b.feed(&chunk, MAX_EVENT_BYTES))
            .count();
        assert_eq!(fed, MAX_EVENT_BYTES / 4096);
    }

    #[tokio::test]
    async fn the_bounded_stream_errs_once_then_ends() {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = vec![
            Ok(Bytes::from_static(b"data: 1\n\n")),
            Ok(Bytes::from(vec![b'a'; 100])),
            Ok(Bytes::from_static(b"data: 2\n\n")),
        ];
        let out: Vec<_> = bounded(futures_util::stream::iter(chunks), 50)
            .collect()
            .await;
        assert_eq!(out.len(), 2);
        assert!(out[0].is_ok());
        assert!(matches!(out[1], Err(ReadError::EventTooLarge)));
    }
}
