//! Gemini's `streamGenerateContent?alt=sse` → OpenAI `chat.completion.chunk`s.
//!
//! Each `data:` frame is a whole `GenerateContentResponse` holding only the new parts; a
//! `functionCall` arrives whole, so it becomes one `tool_calls` delta with id, name and
//! arguments. `finishReason` comes on a candidate's last frame; the latest `usageMetadata`
//! wins. Gemini sends no terminator: the stream is complete when the body ends after every
//! candidate seen has finished ([`StreamTranslator::end`]); llmux then adds the usage chunk
//! (when asked) and `data: [DONE]`. An `{"error":…}` frame (possibly bare JSON, see
//! [`sse_data_lines`]) fails the stream.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};

use super::response::{call_id, finish_reason, safe_id, tool_call, WireResponse, WireUsage};
use crate::providers::{AttemptError, FailureClass, Usage};

pub use crate::providers::stream::StreamOutput;

#[derive(Default)]
struct Choice {
    /// Tool calls sent so far (the next call's `index`).
    calls: usize,
    finished: bool,
}

pub struct StreamTranslator {
    include_usage: bool,
    created: u64,
    model: String,
    /// Whether `model` is the stream's own `modelVersion` (not the requested model).
    reported: bool,
    id: Option<String>,
    choices: BTreeMap<u32, Choice>,
    usage: WireUsage,
    content: bool,
    done: bool,
    /// The last finish reason sent (OpenAI's terms), for traces.
    finish: Option<&'static str>,
}

impl StreamTranslator {
    /// `model` names the chunks until the stream reports its `modelVersion`.
    pub fn new(include_usage: bool, created: u64, model: &str) -> StreamTranslator {
        StreamTranslator {
            include_usage,
            created,
            model: model.to_owned(),
            reported: false,
            id: None,
            choices: BTreeMap::new(),
            usage: WireUsage::default(),
            content: false,
            done: false,
            finish: None,
        }
    }

    /// The last finish reason the stream sent, once one has been.
    pub fn finish_reason(&self) -> Option<&'static str> {
        self.finish
    }

    pub fn usage(&self) -> Usage {
        self.usage.usage()
    }

    /// The model the stream says served it (`modelVersion`), for logs and cost.
    pub fn model(&self) -> Option<&str> {
        self.reported.then_some(self.model.as_str())
    }

    /// Whether any text, tool call or finish reason has been produced.
    pub fn has_content(&self) -> bool {
        self.content
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> String {
        let mut c = json!({
            "id": format!("chatcmpl-{}", self.id.as_deref().unwrap_or("gemini")),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = usage {
            c["usage"] = u;
        }
        c.to_string()
    }

    /// One SSE event's data.
    pub fn on_data(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let data = data.trim();
        if data.is_empty() || self.done {
            return;
        }
        // Google's proxies may relay a JSON array element by element; take the object.
        let data = data.trim_start_matches('[').trim_end_matches([']', ',']);
        let frame: WireResponse = match serde_json::from_str(data) {
            Ok(f) => f,
            Err(_) => {
                out.push(StreamOutput::Error(AttemptError::new(
                    502,
                    FailureClass::Connection,
                    "server_error",
                    "upstream sent a malformed stream event",
                )));
                return;
            }
        };
        if let Some(e) = &frame.error {
            let body = json!({ "error": e }).to_string();
            let status = e.get("code").and_then(Value::as_u64).unwrap_or(502) as u16;
            let mut err = super::translate_error(status, body.as_bytes());
            // An error inside a 200 stream is the upstream's failure, not the client's; a
            // body hint is not capped here, so the target's own cooldown applies.
            if err.class == FailureClass::Client {
                err.class = FailureClass::Server;
            }
            err.retry_after = None;
            out.push(StreamOutput::Error(err));
            return;
        }
        if self.id.is_none() {
            self.id = Some(safe_id(frame.response_id.as_deref()));
        }
        if let Some(m) = frame.model_version.as_deref().filter(|m| !m.is_empty()) {
            if m != self.model {
                self.model = m.to_owned();
            }
            self.reported = true;
        }
        if let Some(u) = frame.usage_metadata {
            self.usage = u;
        }
        let blocked = frame.blocked();
        let rid = self.id.clone().unwrap_or_default();
        for (pos, cand) in frame.candidates.unwrap_or_default().into_iter().enumerate() {
            let index = cand.index.unwrap_or(pos as u32);
            let first = !self.choices.contains_key(&index);
            let choice = self.choices.entry(index).or_default();
            let mut text = String::new();
            let mut calls = Vec::new();
            for part in cand.content.unwrap_or_default().parts {
                if part.thought == Some(true) {
                    continue;
                }
                if let Some(call) = part.function_call {
                    let n = choice.calls;
                    let id = call_id(&rid, index, n, &call, part.thought_signature.as_deref());
                    let mut tc = tool_call(id, call);
                    tc["index"] = n.into();
                    calls.push(tc);
                    choice.calls += 1;
                } else if let Some(t) = part.text {
                    text.push_str(&t);
                }
            }
            let mut delta = serde_json::Map::new();
            if first {
                delta.insert("role".into(), "assistant".into());
            }
            if !text.is_empty() {
                delta.insert("content".into(), text.into());
            }
            if !calls.is_empty() {
                delta.insert("tool_calls".into(), Value::Array(calls));
            }
            let finish = cand
                .finish_reason
                .as_deref()
                .map(|r| finish_reason(r, choice.calls > 0));
            let carries = delta.contains_key("content") || delta.contains_key("tool_calls");
            if first || carries {
                self.content |= carries;
                let c = json!([{"index": index, "delta": delta, "logprobs": null, "finish_reason": null}]);
                out.push(StreamOutput::Chunk(self.chunk(c, None)));
            }
            if let Some(reason) = finish {
                let choice = self.choices.entry(index).or_default();
                if !choice.finished {
                    choice.finished = true;
                    self.content = true;
                    self.finish = Some(reason);
                    let c = json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": reason}]);
                    out.push(StreamOutput::Chunk(self.chunk(c, None)));
                }
            }
        }
        if blocked && self.choices.is_empty() {
            self.choices.insert(
                0,
                Choice {
                    calls: 0,
                    finished: true,
                },
            );
            self.content = true;
            self.finish = Some("content_filter");
            let c = json!([{"index": 0, "delta": {"role": "assistant"}, "logprobs": null, "finish_reason": "content_filter"}]);
            out.push(StreamOutput::Chunk(self.chunk(c, None)));
        }
    }

    /// The body ended: complete when every candidate finished (the usage chunk, then
    /// `[DONE]`), else the stream broke.
    pub fn end(&mut self, out: &mut Vec<StreamOutput>) {
        if self.done {
            return;
        }
        self.done = true;
        if self.choices.is_empty() || self.choices.values().any(|c| !c.finished) {
            out.push(StreamOutput::Error(AttemptError::new(
                502,
                FailureClass::Connection,
                "server_error",
                "upstream stream ended before its finishReason",
            )));
            return;
        }
        if self.include_usage {
            out.push(StreamOutput::Chunk(
                self.chunk(json!([]), Some(self.usage.to_openai())),
            ));
        }
        out.push(StreamOutput::Done);
    }
}

/// Whether a line start can only be (`Some(true)`) or cannot be (`Some(false)`) an SSE field
/// (`data:`, `event:`, `id:`, `retry:`, or a `:` comment); `None` while it could still be one.
fn classify(start: &[u8]) -> Option<bool> {
    const FIELDS: [&[u8]; 5] = [b"data:", b"event:", b"id:", b"retry:", b":"];
    if FIELDS.iter().any(|f| start.starts_with(f)) {
        return Some(true);
    }
    if FIELDS.iter().any(|f| f.starts_with(start)) {
        return None;
    }
    Some(false)
}

/// Rewrites SSE lines so that bare JSON (Google may send a mid-stream error as plain,
/// multi-line JSON without `data:`) is read as `data:` lines of one event, and ends the body
/// with a blank line so that a last event without one is still delivered. Well-formed `data:`
/// frames pass through byte for byte.
pub fn sse_data_lines<S, E>(body: S) -> impl Stream<Item = Result<Bytes, E>>
where
    S: Stream<Item = Result<Bytes, E>>,
{
    struct State {
        /// The start of the current line while it is still undecided.
        pending: Vec<u8>,
        /// `Some(_)` once the current line is classified (`true`: passes as is).
        decided: Option<bool>,
    }
    let mut st = State {
        pending: Vec::new(),
        decided: None,
    };
    let mut feed = move |chunk: &[u8], out: &mut Vec<u8>| {
        for &b in chunk {
            if b == b'\n' || b == b'\r' {
                if st.decided.is_none() && !st.pending.is_empty() {
                    if classify(&st.pending) == Some(false) {
                        out.extend_from_slice(b"data: ");
                    }
                    out.append(&mut st.pending);
                }
                st.decided = None;
                out.push(b);
                continue;
            }
            match st.decided {
                Some(_) => out.push(b),
                None => {
                    st.pending.push(b);
                    if let Some(field) = classify(&st.pending) {
                        if !field {
                            out.extend_from_slice(b"data: ");
                        }
                        out.append(&mut st.pending);
                        st.decided = Some(field);
                    }
                }
            }
        }
    };
    let mut ended = false;
    body.map(Some)
        .chain(futures_util::stream::once(async { None }))
        .filter_map(move |item| {
            let out = match item {
                Some(Ok(chunk)) => {
                    let mut out = Vec::with_capacity(chunk.len() + 8);
                    feed(&chunk, &mut out);
                    Some(Ok(Bytes::from(out)))
                }
                Some(Err(e)) => {
                    ended = true;
                    Some(Err(e))
                }
                // A clean end: close any last line and event.
                None if !ended => {
                    let mut out = Vec::new();
                    feed(b"\n\n", &mut out);
                    Some(Ok(Bytes::from(out)))
                }
                None => None,
            };
            futures_util::future::ready(out)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const DOC_STREAM: [&str; 2] = [
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"18"}]},"index":0}]}"#,
        r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"C."}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":3,"totalTokenCount":33}}"#,
    ];

    fn run(t: &mut StreamTranslator, frames: &[&str]) -> Vec<Value> {
        let mut out = Vec::new();
        for f in frames {
            t.on_data(f, &mut out);
        }
        t.end(&mut out);
        out.into_iter()
            .map(|o| match o {
                StreamOutput::Chunk(c) => serde_json::from_str(&c).unwrap(),
                StreamOutput::Done => json!("[DONE]"),
                StreamOutput::Error(e) => json!({"error": e.message}),
            })
            .collect()
    }

    #[test]
    fn the_doc_stream_translates_exactly() {
        let mut t = StreamTranslator::new(true, 7, "gemini-2.5-flash");
        let out = run(&mut t, &DOC_STREAM);
        let id = out[0]["id"].as_str().unwrap().to_owned();
        let chunk = |choices: Value| json!({"id": id, "object": "chat.completion.chunk", "created": 7, "model": "gemini-2.5-flash", "choices": choices});
        let mut usage = chunk(json!([]));
        usage["usage"] = json!({"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33,
            "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}});
        assert_eq!(
            out,
            vec![
                chunk(
                    json!([{"index": 0, "delta": {"role": "assistant", "content": "18"}, "logprobs": null, "finish_reason": null}])
                ),
                chunk(
                    json!([{"index": 0, "delta": {"content": "C."}, "logprobs": null, "finish_reason": null}])
                ),
                chunk(
                    json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}])
                ),
                usage,
                json!("[DONE]"),
            ]
        );
        assert_eq!(
            t.usage(),
            Usage {
                prompt_tokens: 30,
                completion_tokens: 3,
                cached_tokens: 0
            }
        );
    }

    #[test]
    fn tool_calls_arrive_whole_with_ids() {
        let mut t = StreamTranslator::new(false, 0, "m");
        let out = run(
            &mut t,
            &[
                r#"{"responseId":"r9","candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"wx","args":{"city":"Paris"}},"thoughtSignature":"c2ln"},{"functionCall":{"name":"now"}}]},"index":0}]}"#,
                r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}]}"#,
            ],
        );
        let calls = &out[0]["choices"][0]["delta"]["tool_calls"];
        assert_eq!(
            calls[0],
            json!({"index": 0, "id": "call_r9_0_0__ts__c2ln", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}})
        );
        assert_eq!(calls[1]["id"], "call_r9_0_1");
        assert_eq!(calls[1]["index"], 1);
        assert_eq!(out[1]["choices"][0]["finish_reason"], "tool_calls");
        // No usage chunk unless asked.
        assert_eq!(out.len(), 3);
        assert_eq!(out[2], json!("[DONE]"));
    }

    #[test]
    fn errors_and_early_ends() {
        let mut t = StreamTranslator::new(true, 0, "m");
        let out = run(&mut t, &[DOC_STREAM[0]]);
        assert_eq!(
            out.last().unwrap(),
            &json!({"error": "upstream stream ended before its finishReason"})
        );
        let mut t = StreamTranslator::new(true, 0, "m");
        let mut out = Vec::new();
        t.on_data(DOC_STREAM[0], &mut out);
        t.on_data("{\n  \"error\": {\n    \"code\": 429,\n    \"message\": \"slow down\",\n    \"status\": \"RESOURCE_EXHAUSTED\"\n  }\n}", &mut out);
        match out.pop() {
            Some(StreamOutput::Error(e)) => {
                assert_eq!((e.status, e.class), (429, FailureClass::RateLimited));
                assert_eq!(e.message, "slow down");
            }
            other => panic!("{other:?}"),
        }
        let mut t = StreamTranslator::new(true, 0, "m");
        let mut out = Vec::new();
        t.on_data(
            r#"{"error":{"code":400,"message":"bad","status":"INVALID_ARGUMENT"}}"#,
            &mut out,
        );
        assert!(matches!(&out[0], StreamOutput::Error(e) if e.class == FailureClass::Server));
        let mut t = StreamTranslator::new(false, 0, "m");
        let out = run(&mut t, &[r#"{"promptFeedback":{"blockReason":"SAFETY"}}"#]);
        assert_eq!(out[0]["choices"][0]["finish_reason"], "content_filter");
        assert_eq!(out[1], json!("[DONE]"));
    }

    async fn rewrite(chunks: &[&str]) -> String {
        let items: Vec<Result<Bytes, ()>> = chunks
            .iter()
            .map(|c| Ok(Bytes::copy_from_slice(c.as_bytes())))
            .collect();
        let out: Vec<_> = sse_data_lines(futures_util::stream::iter(items))
            .collect()
            .await;
        out.into_iter()
            .map(|b| String::from_utf8(b.unwrap().to_vec()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn bare_json_becomes_data_lines_and_frames_pass_through() {
        let frames = "data: {\"a\":1}\r\n\r\n: comment\r\nevent: x\r\ndata: {\"b\":2}\r\n\r\n";
        assert_eq!(rewrite(&[frames]).await, format!("{frames}\n\n"));
        // Split anywhere, even inside `data:`.
        assert_eq!(rewrite(&["da", "ta: {}\n", "\n"]).await, "data: {}\n\n\n\n");
        let bare = "data: {\"a\":1}\n\n{\n  \"error\": {\n    \"code\": 500\n  }\n}\n";
        let out = rewrite(&[&bare[..20], &bare[20..]]).await;
        assert_eq!(
            out,
            "data: {\"a\":1}\n\ndata: {\ndata:   \"error\": {\ndata:     \"code\": 500\ndata:   }\ndata: }\n\n\n"
        );
        let events = crate::providers::stream::data_events(&out);
        let v: Value = serde_json::from_str(&events[1]).unwrap();
        assert_eq!(v["error"]["code"], 500);
        // A last line without its newline still ends as an event.
        assert_eq!(rewrite(&["{\"x\":1}"]).await, "data: {\"x\":1}\n\n");
    }
}
