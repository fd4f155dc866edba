//! ConverseStream: the binary `application/vnd.amazon.eventstream` body decoded into events
//! ([`events`], framing and CRCs by `aws-smithy-eventstream`), and those events translated into
//! OpenAI `chat.completion.chunk` payloads ([`StreamTranslator`]).
//!
//! Each frame becomes an [`eventsource_stream::Event`] so that the shared
//! [`crate::providers::stream::UpstreamStream`] reads it like an SSE event (same idle timeout,
//! commit and error paths): `id` carries the `:message-type` (`event`, `exception`, `error`),
//! `event` the `:event-type` (or `:exception-type`, `:error-code`), `data` the JSON payload. A
//! body that ends cleanly on a frame boundary yields one last event with `id` [`END`], so the
//! translator can tell a finished stream whose `metadata` never came from a cut one.

use std::borrow::Cow;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use eventsource_stream::Event;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::stream_exception;
use super::new_id;
use super::response::{finish_reason, usage_json, WireUsage};
use crate::providers::{AttemptError, Usage};

/// The `id` of the synthetic event that marks a clean end of the body.
pub const END: &str = "end-of-body";

/// Why the binary body could not be read.
#[derive(Debug)]
pub enum FrameError {
    Http(reqwest::Error),
    /// A frame declared a length past the limit.
    TooLarge,
    /// A frame failed to decode (bad CRC, bad header, cut mid-frame).
    Bad(String),
}

struct Decoder<S> {
    body: S,
    buf: BytesMut,
    decoder: MessageFrameDecoder,
    /// The current frame's declared length has been checked against the limit.
    checked: bool,
    done: bool,
}

fn header<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    m.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

/// One decoded frame as an event (see the module docs).
fn to_event(m: &Message) -> Result<Event, FrameError> {
    let kind = header(m, ":message-type").unwrap_or("event");
    let (name, data) = match kind {
        "error" => (
            header(m, ":error-code").unwrap_or("error"),
            json!({ "message": header(m, ":error-message").unwrap_or_default() }).to_string(),
        ),
        "exception" => (
            header(m, ":exception-type").unwrap_or("exception"),
            String::from_utf8_lossy(m.payload()).into_owned(),
        ),
        _ => (
            header(m, ":event-type").unwrap_or_default(),
            std::str::from_utf8(m.payload())
                .map_err(|_| FrameError::Bad("an event payload is not UTF-8".into()))?
                .to_owned(),
        ),
    };
    Ok(Event {
        event: name.to_owned(),
        data,
        id: kind.to_owned(),
        retry: None,
    })
}

impl<S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin> Decoder<S> {
    async fn next(&mut self, limit: usize) -> Option<Result<Event, FrameError>> {
        loop {
            if self.done {
                return None;
            }
            if !self.checked && self.buf.len() >= 4 {
                let declared =
                    u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                if declared as usize > limit {
                    self.done = true;
                    return Some(Err(FrameError::TooLarge));
                }
                self.checked = true;
            }
            match self.decoder.decode_frame(&mut self.buf) {
                Ok(DecodedFrame::Complete(m)) => {
                    self.checked = false;
                    return Some(to_event(&m));
                }
                Ok(DecodedFrame::Incomplete) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(FrameError::Bad(e.to_string())));
                }
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(FrameError::Http(e)));
                }
                None => {
                    self.done = true;
                    // `checked` is set as soon as a frame has begun (4 bytes in).
                    return Some(if self.buf.is_empty() && !self.checked {
                        Ok(Event {
                            event: String::new(),
                            data: String::new(),
                            id: END.to_owned(),
                            retry: None,
                        })
                    } else {
                        Err(FrameError::Bad("the body ended inside a frame".into()))
                    });
                }
            }
        }
    }
}

/// The events of a binary event-stream `body`; a frame longer than `limit` bytes fails the
/// stream before it is buffered.
pub fn events<S>(body: S, limit: usize) -> impl Stream<Item = Result<Event, FrameError>>
where
    S: Stream<Item = Result<Bytes, reqwest::Error>> + Unpin,
{
    let d = Decoder {
        body,
        buf: BytesMut::new(),
        decoder: MessageFrameDecoder::new(),
        checked: false,
        done: false,
    };
    futures_util::stream::unfold(d, move |mut d| async move {
        let item = d.next(limit).await?;
        Some((item, d))
    })
}

pub use crate::providers::stream::StreamOutput;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart<'a> {
    #[serde(default)]
    content_block_index: u64,
    #[serde(borrow)]
    start: Option<StartBody<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartBody<'a> {
    #[serde(borrow)]
    tool_use: Option<ToolStart<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Cow<'a, str>,
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// Flat rather than an enum: parsed once per token.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta<'a> {
    #[serde(default)]
    content_block_index: u64,
    #[serde(borrow)]
    delta: DeltaBody<'a>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeltaBody<'a> {
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tool_use: Option<ToolDelta<'a>>,
}

#[derive(Deserialize)]
struct ToolDelta<'a> {
    #[serde(borrow, default)]
    input: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStop<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    usage: Option<WireUsage>,
}

use crate::providers::stream::{FunctionOut, ToolCallOut};

/// ConverseStream events → OpenAI chunks. The stream ends (`Done`) once both `messageStop`
/// and `metadata` have come (in either order), or at a clean end of the body after
/// `messageStop`.
#[derive(Debug)]
pub struct StreamTranslator {
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    started: bool,
    finished: bool,
    has_content: bool,
    stopped: bool,
    /// The finish reason sent (OpenAI's terms), for traces.
    finish: Option<&'static str>,
    usage: Option<Usage>,
    /// (content block index, OpenAI tool call ordinal) of each toolUse block.
    tool_blocks: Vec<(u64, u32)>,
}

impl StreamTranslator {
    /// The finish reason the stream sent, once `messageStop` came.
    pub fn finish_reason(&self) -> Option<&'static str> {
        self.finish
    }

    pub fn new(include_usage: bool, created: u64, model: &str) -> Self {
        StreamTranslator {
            include_usage,
            created,
            id: new_id(),
            model: model.to_owned(),
            started: false,
            finished: false,
            has_content: false,
            stopped: false,
            finish: None,
            usage: None,
            tool_blocks: Vec::new(),
        }
    }

    pub fn has_content(&self) -> bool {
        self.has_content
    }

    pub fn usage(&self) -> Usage {
        self.usage.unwrap_or_default()
    }

    /// The model id the request named (the stream never does).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Feeds one event (`kind` = message type, `name` = event/exception type, `data` = payload).
    pub fn on_event(&mut self, kind: &str, name: &str, data: &str, out: &mut Vec<StreamOutput>) {
        if self.finished {
            return;
        }
        match kind {
            "event" => {}
            END if self.stopped => return self.finish(out),
            END => {
                return self.fail(
                    AttemptError::new(
                        502,
                        crate::providers::FailureClass::Connection,
                        "server_error",
                        "upstream stream ended before messageStop",
                    ),
                    out,
                )
            }
            _ => return self.fail(stream_exception(name, data), out),
        }
        let ok = match name {
            "messageStart" => {
                self.ensure_started(out);
                true
            }
            "contentBlockStart" => self.on_block_start(data, out),
            "contentBlockDelta" => self.on_block_delta(data, out),
            "messageStop" => self.on_stop(data, out),
            "metadata" => match serde_json::from_str::<Metadata>(data) {
                Ok(m) => {
                    self.usage = Some(m.usage.unwrap_or_default().usage());
                    if self.stopped {
                        self.finish(out);
                    }
                    true
                }
                Err(_) => false,
            },
            // contentBlockStop and event types newer than this list.
            _ => true,
        };
        if !ok {
            let e = AttemptError::bad_upstream(
                "invalid_upstream_response",
                format!(
                    "upstream sent a malformed {} event",
                    super::truncate_utf8(name, 64)
                ),
            );
            self.fail(e, out);
        }
    }

    fn fail(&mut self, e: AttemptError, out: &mut Vec<StreamOutput>) {
        self.finished = true;
        out.push(StreamOutput::Error(e));
    }

    fn ensure_started(&mut self, out: &mut Vec<StreamOutput>) {
        if !self.started {
            self.started = true;
            self.push(json!({"role": "assistant", "content": ""}), None, out);
        }
    }

    fn on_block_start(&mut self, data: &str, out: &mut Vec<StreamOutput>) -> bool {
        let Ok(s) = serde_json::from_str::<BlockStart<'_>>(data) else {
            return false;
        };
        if let Some(t) = s.start.and_then(|s| s.tool_use) {
            let ordinal = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
            self.tool_blocks.push((s.content_block_index, ordinal));
            self.ensure_started(out);
            let call = ToolCallOut {
                index: ordinal,
                id: Some(&t.tool_use_id),
                kind: Some("function"),
                function: FunctionOut {
                    name: Some(&t.name),
                    arguments: "",
                },
            };
            let delta = json!({ "tool_calls": [call] });
            self.has_content = true;
            self.push(delta, None, out);
        }
        true
    }

    fn on_block_delta(&mut self, data: &str, out: &mut Vec<StreamOutput>) -> bool {
        let Ok(d) = serde_json::from_str::<BlockDelta<'_>>(data) else {
            return false;
        };
        if let Some(text) = d.delta.text.filter(|t| !t.is_empty()) {
            self.ensure_started(out);
            self.has_content = true;
            self.push(json!({ "content": text }), None, out);
        } else if let Some(tool) = d.delta.tool_use.filter(|t| !t.input.is_empty()) {
            // Input for a block no contentBlockStart opened has no call to belong to.
            let Some(&(_, ordinal)) = self
                .tool_blocks
                .iter()
                .rev()
                .find(|(i, _)| *i == d.content_block_index)
            else {
                return true;
            };
            self.ensure_started(out);
            let call = ToolCallOut {
                index: ordinal,
                id: None,
                kind: None,
                function: FunctionOut {
                    name: None,
                    arguments: &tool.input,
                },
            };
            self.has_content = true;
            self.push(json!({ "tool_calls": [call] }), None, out);
        }
        // reasoningContent deltas: nothing an OpenAI chunk carries.
        true
    }

    fn on_stop(&mut self, data: &str, out: &mut Vec<StreamOutput>) -> bool {
        let Ok(s) = serde_json::from_str::<MessageStop<'_>>(data) else {
            return false;
        };
        match finish_reason(s.stop_reason.as_deref()) {
            Ok(reason) => {
                self.ensure_started(out);
                self.stopped = true;
                self.finish = Some(reason);
                self.push(json!({}), Some(reason), out);
                if self.usage.is_some() {
                    self.finish(out);
                }
            }
            Err(e) => self.fail(e, out),
        }
        true
    }

    fn finish(&mut self, out: &mut Vec<StreamOutput>) {
        if self.include_usage {
            let chunk = json!({"id": self.id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": [],
                "usage": usage_json(self.usage())});
            out.push(StreamOutput::Chunk(chunk.to_string()));
        }
        self.finished = true;
        out.push(StreamOutput::Done);
    }

    fn push(&self, delta: Value, finish: Option<&str>, out: &mut Vec<StreamOutput>) {
        let mut chunk = json!({"id": self.id, "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        out.push(StreamOutput::Chunk(chunk.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `messageStop` frame of wire-formats-2 §4 (botocore-decoded), verbatim.
    const DOC_FRAME: &str = "0000007a 00000051 ca2c4665
0b 3a6576656e742d74797065 07 000b 6d65737361676553746f70
0d 3a636f6e74656e742d74797065 07 0010 6170706c69636174696f6e2f6a736f6e
0d 3a6d6573736167652d74797065 07 0005 6576656e74
7b2273746f70526561736f6e223a22656e645f7475726e227d 5fbf09fc";

    fn unhex(s: &str) -> Vec<u8> {
        let h: String = s.chars().filter(char::is_ascii_hexdigit).collect();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Decodes `bytes` delivered in chunks of `split` bytes.
    async fn decode(bytes: &[u8], split: usize, limit: usize) -> Vec<Result<Event, FrameError>> {
        let chunks: Vec<Result<Bytes, reqwest::Error>> = bytes
            .chunks(split)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        events(futures_util::stream::iter(chunks), limit)
            .collect()
            .await
    }

    #[tokio::test]
    async fn the_documented_frame_decodes_in_any_split() {
        let frame = unhex(DOC_FRAME);
        assert_eq!(frame.len(), 122);
        for split in [1, 3, 7, 12, 13, 122] {
            let mut two = frame.clone();
            two.extend_from_slice(&frame);
            let out = decode(&two, split, 1 << 20).await;
            assert_eq!(out.len(), 3, "split {split}");
            let e = out[0].as_ref().unwrap();
            assert_eq!((e.id.as_str(), e.event.as_str()), ("event", "messageStop"));
            assert_eq!(e.data, r#"{"stopReason":"end_turn"}"#);
            assert_eq!(out[2].as_ref().unwrap().id, END);
        }
    }

    #[tokio::test]
    async fn bad_crcs_cut_frames_and_huge_lengths_fail() {
        let frame = unhex(DOC_FRAME);
        let mut bad = frame.clone();
        bad[100] ^= 1;
        let out = decode(&bad, 10, 1 << 20).await;
        assert!(
            matches!(out.last(), Some(Err(FrameError::Bad(_)))),
            "{out:?}"
        );
        let out = decode(&frame[..60], 10, 1 << 20).await;
        assert!(
            matches!(out.last(), Some(Err(FrameError::Bad(_)))),
            "{out:?}"
        );
        let out = decode(&frame, 10, 100).await;
        assert!(matches!(out[..], [Err(FrameError::TooLarge)]), "{out:?}");
    }

    /// The stream of wire-formats-2 §4, verbatim.
    const DOC_STREAM: &[(&str, &str)] = &[
        ("messageStart", r#"{"role":"assistant"}"#),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"Checking."}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":0}"#),
        (
            "contentBlockStart",
            r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"wx"}}}"#,
        ),
        (
            "contentBlockDelta",
            r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":\"Paris\"}"}}}"#,
        ),
        ("contentBlockStop", r#"{"contentBlockIndex":1}"#),
        ("messageStop", r#"{"stopReason":"tool_use"}"#),
        (
            "metadata",
            r#"{"usage":{"inputTokens":50,"outputTokens":24,"totalTokens":74},"metrics":{"latencyMs":380}}"#,
        ),
    ];

    fn replay(t: &mut StreamTranslator, events: &[(&str, &str)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (name, data) in events {
            t.on_event("event", name, data, &mut out);
        }
        out.into_iter()
            .map(|o| match o {
                StreamOutput::Chunk(c) => serde_json::from_str(&c).unwrap(),
                StreamOutput::Done => json!("[DONE]"),
                StreamOutput::Error(e) => json!({"error": e.message, "status": e.status}),
            })
            .collect()
    }

    #[test]
    fn doc_stream_with_usage() {
        let mut t = StreamTranslator::new(true, 7, "anthropic.claude-3-haiku-20240307-v1:0");
        let out = replay(&mut t, DOC_STREAM);
        let deltas: Vec<&Value> = out.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(deltas[0], &json!({"role": "assistant", "content": ""}));
        assert_eq!(deltas[1], &json!({"content": "Checking."}));
        assert_eq!(
            deltas[2],
            &json!({"tool_calls": [{"index": 0, "id": "tooluse_1", "type": "function", "function": {"name": "wx", "arguments": ""}}]})
        );
        assert_eq!(
            deltas[3],
            &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":\"Paris\"}"}}]})
        );
        assert_eq!(out[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out[5]["choices"], json!([]));
        assert_eq!(out[5]["usage"]["prompt_tokens"], 50);
        assert_eq!(out[5]["usage"]["completion_tokens"], 24);
        assert_eq!(out[6], json!("[DONE]"));
        assert_eq!(out.len(), 7);
        for c in &out[..5] {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["model"], "anthropic.claude-3-haiku-20240307-v1:0");
            assert!(c["usage"].is_null() && c.get("usage").is_some());
        }
        assert!(t.has_content());
        assert_eq!(t.usage().completion_tokens, 24);
    }

    #[test]
    fn without_usage_metadata_or_in_other_orders() {
        let mut t = StreamTranslator::new(false, 7, "m");
        let out = replay(&mut t, DOC_STREAM);
        assert_eq!(out.len(), 6);
        assert!(out[..5].iter().all(|c| c.get("usage").is_none()));
        // metadata before messageStop: Done after the stop.
        let mut t = StreamTranslator::new(true, 7, "m");
        let out = replay(
            &mut t,
            &[DOC_STREAM[0], DOC_STREAM[1], DOC_STREAM[7], DOC_STREAM[6]],
        );
        assert_eq!(out.last(), Some(&json!("[DONE]")));
        // No metadata at all: the clean end of the body finishes it.
        let mut t = StreamTranslator::new(true, 7, "m");
        let mut o = Vec::new();
        for (n, d) in &DOC_STREAM[..7] {
            t.on_event("event", n, d, &mut o);
        }
        t.on_event(END, "", "", &mut o);
        assert!(matches!(o.last(), Some(StreamOutput::Done)));
        // Ending before messageStop is a failure.
        let mut t = StreamTranslator::new(true, 7, "m");
        let mut o = Vec::new();
        t.on_event("event", DOC_STREAM[1].0, DOC_STREAM[1].1, &mut o);
        t.on_event(END, "", "", &mut o);
        assert!(matches!(o.last(), Some(StreamOutput::Error(_))));
    }

    #[test]
    fn exceptions_and_garbage_fail_the_stream() {
        let mut t = StreamTranslator::new(true, 7, "m");
        let mut o = Vec::new();
        t.on_event(
            "exception",
            "throttlingException",
            r#"{"message":"slow down"}"#,
            &mut o,
        );
        let Some(StreamOutput::Error(e)) = o.last() else {
            panic!("{o:?}")
        };
        assert_eq!(
            (e.status, e.class),
            (429, crate::providers::FailureClass::RateLimited)
        );
        // Later events are ignored.
        t.on_event("event", "messageStart", "{}", &mut o);
        assert_eq!(o.len(), 1);
        for name in [
            "contentBlockDelta",
            "contentBlockStart",
            "messageStop",
            "metadata",
        ] {
            let mut t = StreamTranslator::new(true, 7, "m");
            let mut o = Vec::new();
            t.on_event("event", name, "{not json", &mut o);
            assert!(matches!(o.last(), Some(StreamOutput::Error(_))), "{name}");
        }
        let mut t = StreamTranslator::new(true, 7, "m");
        let mut o = Vec::new();
        t.on_event(
            "event",
            "messageStop",
            r#"{"stopReason":"malformed_model_output"}"#,
            &mut o,
        );
        assert!(matches!(o.last(), Some(StreamOutput::Error(e)) if e.status == 502));
    }
}
