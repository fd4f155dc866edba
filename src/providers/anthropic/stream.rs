//! Anthropic SSE events -> OpenAI chat.completion.chunk payloads.

use super::error::openai_error;
use super::response::{finish_reason_for, usage_from, WireUsage};
use super::*;

/// One translated SSE payload for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOutput {
    /// An OpenAI chunk JSON (serialized), to be sent as `data: <json>\n\n`.
    Chunk(String),
    /// The stream finished normally (after message_stop): the caller sends `data: [DONE]\n\n`.
    Done,
    /// Upstream sent an `error` event: OpenAI-shaped error object `{"error":{...}}` serialized; the caller sends it as `data: ...` then closes.
    Error(String),
}

/// Streaming: a state machine fed with Anthropic SSE events (event name + data string) that yields OpenAI `chat.completion.chunk` payloads.
#[derive(Debug, Clone)]
pub struct StreamTranslator {
    include_usage: bool,
    created: u64,
    id: String,
    model: String,
    /// The role chunk has been sent.
    started: bool,
    /// Done or Error has been emitted; later events are ignored.
    finished: bool,
    has_content: bool,
    finish_reason: Option<&'static str>,
    /// (Anthropic content block index, OpenAI tool call ordinal) of every tool_use block so far.
    /// Input deltas name the block index; OpenAI clients want dense ordinals from 0.
    tool_blocks: Vec<(u64, u32)>,
    input_tokens: u64,
    cache_read_tokens: u64,
    cache_creation_tokens: u64,
    output_tokens: u64,
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageStart<'a> {
    #[serde(borrow)]
    message: StartMessage<'a>,
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    index: u64,
    #[serde(borrow)]
    content_block: StartBlock<'a>,
}

#[derive(Deserialize)]
struct StartBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BlockDelta<'a> {
    index: u64,
    #[serde(borrow)]
    delta: DeltaBody<'a>,
}

/// Flat rather than a tagged enum: serde buffers tagged enums, and this is parsed per token.
#[derive(Deserialize)]
struct DeltaBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    partial_json: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct MessageDelta<'a> {
    #[serde(borrow, default)]
    delta: Option<MessageDeltaBody<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct MessageDeltaBody<'a> {
    #[serde(borrow, default)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ChunkOut<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: &'a [ChoiceOut<'a>],
    /// Absent without include_usage; `Some(None)` serializes the `null` OpenAI puts on every
    /// chunk but the last when include_usage is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<UsageOut>>,
}

#[derive(Serialize)]
struct ChoiceOut<'a> {
    index: u32,
    delta: DeltaOut<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct DeltaOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallOut<'a>; 1]>,
}

use crate::providers::stream::{FunctionOut, ToolCallOut};

#[derive(Serialize)]
struct UsageOut {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

impl StreamTranslator {
    /// `include_usage` = request's stream_options.include_usage; `created` unix ts; `fallback_model` = model asked for, used until message_start reports one.
    #[must_use]
    pub fn new(include_usage: bool, created: u64, fallback_model: &str) -> Self {
        Self {
            include_usage,
            created,
            id: String::new(),
            model: fallback_model.to_owned(),
            started: false,
            finished: false,
            has_content: false,
            finish_reason: None,
            tool_blocks: Vec::new(),
            input_tokens: 0,
            cache_read_tokens: 0,
            cache_creation_tokens: 0,
            output_tokens: 0,
        }
    }

    /// Feed one SSE event. `event` is the SSE `event:` name (may be empty: then use the data's "type" field). Unknown events and ping/content_block_stop/thinking/signature/citations deltas produce nothing. Malformed data JSON -> StreamOutput::Error with an OpenAI error object (type "server_error", message saying upstream sent malformed event).
    ///
    /// Events whose data carries nothing needed (ping, content_block_stop, message_stop, unknown)
    /// are not parsed at all. Once Done or Error has been produced, further events are ignored.
    pub fn on_event(&mut self, event: &str, data: &str, out: &mut Vec<StreamOutput>) {
        if self.finished {
            return;
        }
        let kind: Cow<'_, str> = if event.is_empty() {
            match serde_json::from_str::<EventType<'_>>(data) {
                Ok(EventType { kind: Some(kind) }) => kind,
                // Valid JSON without a type names no event we know.
                Ok(EventType { kind: None }) => return,
                Err(_) => return self.fail_malformed("unnamed", out),
            }
        } else {
            Cow::Borrowed(event)
        };

        match kind.as_ref() {
            "message_start" => self.on_message_start(data, out),
            "content_block_start" => self.on_block_start(data, out),
            "content_block_delta" => self.on_block_delta(data, out),
            "message_delta" => self.on_message_delta(data, out),
            "message_stop" => self.on_message_stop(out),
            "error" => self.on_error(data, out),
            _ => {}
        }
    }

    /// True once any chunk carrying content (text delta, tool call start/arguments) has been produced — the router uses it to know when it has committed to this upstream.
    #[must_use]
    pub fn has_content(&self) -> bool {
        self.has_content
    }

    /// Usage seen so far (input from message_start, output from message_delta which is cumulative).
    #[must_use]
    pub fn usage(&self) -> Usage {
        usage_from(&WireUsage {
            input_tokens: Some(self.input_tokens),
            output_tokens: Some(self.output_tokens),
            cache_creation_input_tokens: Some(self.cache_creation_tokens),
            cache_read_input_tokens: Some(self.cache_read_tokens),
        })
    }

    /// The OpenAI finish_reason, once message_delta (or message_stop) has set one.
    #[must_use]
    pub fn finish_reason(&self) -> Option<&str> {
        self.finish_reason
    }

    fn record_usage(&mut self, usage: &WireUsage) {
        // message_delta repeats counters cumulatively; absent fields keep their earlier value.
        if let Some(n) = usage.input_tokens {
            self.input_tokens = n;
        }
        if let Some(n) = usage.cache_read_input_tokens {
            self.cache_read_tokens = n;
        }
        if let Some(n) = usage.cache_creation_input_tokens {
            self.cache_creation_tokens = n;
        }
        if let Some(n) = usage.output_tokens {
            self.output_tokens = n;
        }
    }

    fn on_message_start(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(start) = serde_json::from_str::<MessageStart<'_>>(data) else {
            return self.fail_malformed("message_start", out);
        };
        if let Some(id) = start.message.id {
            self.id = id.into_owned();
        }
        if let Some(model) = start.message.model.filter(|m| !m.is_empty()) {
            self.model = model.into_owned();
        }
        if let Some(usage) = &start.message.usage {
            self.record_usage(usage);
        }
        self.ensure_started(out);
    }

    /// Sends the role chunk if it has not gone out yet, so that a stream missing message_start
    /// still opens the way OpenAI clients expect.
    fn ensure_started(&mut self, out: &mut Vec<StreamOutput>) {
        if !self.started {
            self.started = true;
            let delta = DeltaOut {
                role: Some("assistant"),
                content: Some(""),
                ..DeltaOut::default()
            };
            self.push_chunk(delta, None, out);
        }
    }

    fn on_block_start(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(start) = serde_json::from_str::<BlockStart<'_>>(data) else {
            return self.fail_malformed("content_block_start", out);
        };
        let block = start.content_block;
        match block.kind.as_ref() {
            "tool_use" => {
                let (Some(id), Some(name)) = (block.id.as_deref(), block.name.as_deref()) else {
                    return self.fail_malformed("content_block_start", out);
                };
                let ordinal = u32::try_from(self.tool_blocks.len()).unwrap_or(u32::MAX);
                self.tool_blocks.push((start.index, ordinal));
                self.ensure_started(out);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: ordinal,
                        id: Some(id),
                        kind: Some("function"),
                        function: FunctionOut {
                            name: Some(name),
                            arguments: "",
                        },
                    }]),
                    ..DeltaOut::default()
                };
                self.has_content = true;
                self.push_chunk(delta, None, out);
            }
            // Anthropic opens text blocks empty, but nothing forbids initial text.
            "text" => {
                if let Some(text) = block.text.as_deref().filter(|t| !t.is_empty()) {
                    self.push_text(text, out);
                }
            }
            _ => {}
        }
    }

    fn on_block_delta(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(delta) = serde_json::from_str::<BlockDelta<'_>>(data) else {
            return self.fail_malformed("content_block_delta", out);
        };
        match delta.delta.kind.as_ref() {
            "text_delta" => {
                let Some(text) = delta.delta.text else {
                    return self.fail_malformed("content_block_delta", out);
                };
                if !text.is_empty() {
                    self.push_text(&text, out);
                }
            }
            "input_json_delta" => {
                let Some(partial) = delta.delta.partial_json else {
                    return self.fail_malformed("content_block_delta", out);
                };
                // Deltas for blocks that are not client tool calls (server_tool_use, ...) have
                // no OpenAI counterpart; Anthropic also opens every tool input with "".
                let Some(&(_, ordinal)) = self
                    .tool_blocks
                    .iter()
                    .rev()
                    .find(|(index, _)| *index == delta.index)
                else {
                    return;
                };
                if partial.is_empty() {
                    return;
                }
                self.ensure_started(out);
                let delta = DeltaOut {
                    tool_calls: Some([ToolCallOut {
                        index: ordinal,
                        id: None,
                        kind: None,
                        function: FunctionOut {
                            name: None,
                            arguments: &partial,
                        },
                    }]),
                    ..DeltaOut::default()
                };
                self.has_content = true;
                self.push_chunk(delta, None, out);
            }
            // thinking_delta, signature_delta, citations_delta and future kinds.
            _ => {}
        }
    }

    fn push_text(&mut self, text: &str, out: &mut Vec<StreamOutput>) {
        self.ensure_started(out);
        let delta = DeltaOut {
            content: Some(text),
            ..DeltaOut::default()
        };
        self.has_content = true;
        self.push_chunk(delta, None, out);
    }

    fn on_message_delta(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let Ok(delta) = serde_json::from_str::<MessageDelta<'_>>(data) else {
            return self.fail_malformed("message_delta", out);
        };
        if let Some(usage) = &delta.usage {
            self.record_usage(usage);
        }
        let stop_reason = delta.delta.as_ref().and_then(|d| d.stop_reason.as_deref());
        let reason = finish_reason_for(stop_reason);
        self.finish_reason = Some(reason);
        self.ensure_started(out);
        self.push_chunk(DeltaOut::default(), Some(reason), out);
    }

    fn on_message_stop(&mut self, out: &mut Vec<StreamOutput>) {
        self.ensure_started(out);
        // OpenAI clients wait for a finish_reason; give one even if message_delta went missing.
        if self.finish_reason.is_none() {
            self.finish_reason = Some("stop");
            self.push_chunk(DeltaOut::default(), Some("stop"), out);
        }
        if self.include_usage {
            let usage = self.usage();
            let chunk = ChunkOut {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: &[],
                usage: Some(Some(UsageOut {
                    prompt_tokens: usage.prompt_tokens,
                    completion_tokens: usage.completion_tokens,
                    total_tokens: usage.prompt_tokens.saturating_add(usage.completion_tokens),
                })),
            };
            out.push(StreamOutput::Chunk(to_json_string(&chunk)));
        }
        self.finished = true;
        out.push(StreamOutput::Done);
    }

    fn on_error(&mut self, data: &str, out: &mut Vec<StreamOutput>) {
        let parsed: Option<Value> = serde_json::from_str(data).ok();
        let detail = parsed
            .as_ref()
            .and_then(|v| v.get("error"))
            .and_then(Value::as_object);
        let kind = detail
            .and_then(|d| d.get("type"))
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .unwrap_or("api_error");
        let message = detail
            .and_then(|d| d.get("message"))
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map_or("upstream stream failed", |m| {
                truncate_utf8(m, MAX_ECHO_BYTES)
            });
        self.finished = true;
        out.push(StreamOutput::Error(to_json_string(&openai_error(
            kind, message,
        ))));
    }

    fn fail_malformed(&mut self, event: &str, out: &mut Vec<StreamOutput>) {
        self.finished = true;
        let message = format!("upstream sent a malformed {event} event");
        out.push(StreamOutput::Error(to_json_string(&json!({
            "error": { "message": message, "type": "server_error", "param": null, "code": null },
        }))));
    }

    fn push_chunk(
        &self,
        delta: DeltaOut<'_>,
        finish_reason: Option<&'static str>,
        out: &mut Vec<StreamOutput>,
    ) {
        let choices = [ChoiceOut {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        let chunk = ChunkOut {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        };
        out.push(StreamOutput::Chunk(to_json_string(&chunk)));
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    pub(in crate::providers::anthropic) const DOC_STREAM: &[(&str, &str)] = &[
        (
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_01","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"output_tokens":1}}}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type":"ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi."}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"wx","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\":\"Paris\"}"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":32}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
        (
            "error",
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ),
    ];

    pub(in crate::providers::anthropic) fn replay(
        t: &mut StreamTranslator,
        events: &[(&str, &str)],
    ) -> Vec<StreamOutput> {
        let mut out = Vec::new();
        for (event, data) in events {
            t.on_event(event, data, &mut out);
        }
        out
    }

    fn chunk(s: &str) -> StreamOutput {
        StreamOutput::Chunk(s.to_owned())
    }

    #[test]
    fn doc_stream_replay_with_usage() {
        let mut t = StreamTranslator::new(true, 1_735_689_600, "claude-sonnet-4-5");
        let out = replay(&mut t, DOC_STREAM);
        let head = r#"{"id":"msg_01","object":"chat.completion.chunk","created":1735689600,"model":"claude-sonnet-4-5","choices":"#;
        let expected = vec![
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"content":"Hi."}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"toolu_01","type":"function","function":{{"name":"wx","arguments":""}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"city\":\"Paris\"}}"}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"tool_calls"}}],"usage":null}}"#
            )),
            chunk(&format!(
                r#"{head}[],"usage":{{"prompt_tokens":50,"completion_tokens":32,"total_tokens":82}}}}"#
            )),
            StreamOutput::Done,
        ];
        assert_eq!(out, expected);
        assert!(t.has_content());
        assert_eq!(
            t.usage(),
            Usage {
                prompt_tokens: 50,
                completion_tokens: 32,
                cached_tokens: 0
            }
        );
        assert_eq!(t.finish_reason(), Some("tool_calls"));
    }

    #[test]
    fn doc_stream_replay_without_usage() {
        let mut t = StreamTranslator::new(false, 7, "fallback");
        let out = replay(&mut t, DOC_STREAM);
        assert_eq!(out.len(), 6, "no usage chunk without include_usage");
        assert_eq!(out.last(), Some(&StreamOutput::Done));
        for o in &out[..5] {
            let StreamOutput::Chunk(s) = o else {
                panic!("expected chunk, got {o:?}")
            };
            let v: Value = serde_json::from_str(s).expect("chunk is JSON");
            assert!(v.get("usage").is_none(), "{s}");
            assert_eq!(v["object"], "chat.completion.chunk");
            assert_eq!(v["created"], 7);
            assert_eq!(v["model"], "claude-sonnet-4-5");
            assert_eq!(v["choices"][0]["logprobs"], Value::Null);
        }
        assert_eq!(
            out[0],
            chunk(
                r#"{"id":"msg_01","object":"chat.completion.chunk","created":7,"model":"claude-sonnet-4-5","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#
            )
        );
        // Usage is tracked for the router even when the client did not ask for it.
        assert_eq!(t.usage().completion_tokens, 32);
    }

    fn chunks_as_values(out: &[StreamOutput]) -> Vec<Value> {
        out.iter()
            .filter_map(|o| match o {
                StreamOutput::Chunk(s) => Some(serde_json::from_str(s).expect("chunk is JSON")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tool_call_ordinals_are_dense_and_deltas_route_by_block_index() {
        let mut t = StreamTranslator::new(false, 0, "m");
        let out = replay(
            &mut t,
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"msg","model":"c","usage":{"input_tokens":3,"cache_read_input_tokens":4,"cache_creation_input_tokens":5}}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t_a","name":"a","input":{}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":2,"content_block":{"type":"server_tool_use","id":"s","name":"web_search","input":{}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"q\":1}"}}"#,
                ),
                (
                    "content_block_start",
                    r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"t_b","name":"b","input":{}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\"x\""}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":":1}"}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"citations_delta","citation":{}}}"#,
                ),
                (
                    "message_delta",
                    r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
                ),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        );
        let chunks = chunks_as_values(&out);
        let deltas: Vec<&Value> = chunks.iter().map(|c| &c["choices"][0]["delta"]).collect();
        assert_eq!(
            deltas,
            [
                &json!({"role": "assistant", "content": ""}),
                &json!({"tool_calls": [{"index": 0, "id": "t_a", "type": "function", "function": {"name": "a", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 1, "id": "t_b", "type": "function", "function": {"name": "b", "arguments": ""}}]}),
                &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"x\""}}]}),
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
                &json!({"tool_calls": [{"index": 1, "function": {"arguments": ":1}"}}]}),
                &json!({}),
            ]
        );
        assert_eq!(out.last(), Some(&StreamOutput::Done));
        assert_eq!(
            t.usage(),
            Usage {
                prompt_tokens: 12,
                completion_tokens: 9,
                cached_tokens: 4
            }
        );
    }

    #[test]
    fn has_content_only_after_content() {
        let mut t = StreamTranslator::new(false, 0, "m");
        let mut out = Vec::new();
        t.on_event("message_start", DOC_STREAM[0].1, &mut out);
        t.on_event("ping", "{}", &mut out);
        t.on_event("content_block_start", DOC_STREAM[1].1, &mut out);
        t.on_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""}}"#,
            &mut out,
        );
        assert!(!t.has_content());
        assert_eq!(out.len(), 1);
        assert_eq!(t.finish_reason(), None);
        t.on_event("content_block_delta", DOC_STREAM[3].1, &mut out);
        assert!(t.has_content());
    }

    #[test]
    fn empty_event_name_uses_data_type() {
        let mut named = StreamTranslator::new(true, 5, "m");
        let mut unnamed = StreamTranslator::new(true, 5, "m");
        let named_out = replay(&mut named, DOC_STREAM);
        let events: Vec<(&str, &str)> = DOC_STREAM.iter().map(|(_, d)| ("", *d)).collect();
        let unnamed_out = replay(&mut unnamed, &events);
        assert_eq!(named_out, unnamed_out);
        // JSON without a type is an unknown event, not an error.
        let mut out = Vec::new();
        StreamTranslator::new(false, 0, "m").on_event("", r#"{"hello":1}"#, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn fallback_model_until_message_start_reports_one() {
        let mut t = StreamTranslator::new(false, 0, "asked-for");
        let out = replay(
            &mut t,
            &[
                (
                    "message_start",
                    r#"{"type":"message_start","message":{"id":"msg_9","usage":{"input_tokens":1}}}"#,
                ),
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a\n\"b\""}}"#,
                ),
            ],
        );
        let chunks = chunks_as_values(&out);
        assert_eq!(chunks[0]["model"], "asked-for");
        assert_eq!(chunks[0]["id"], "msg_9");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "a\n\"b\"");
    }

    #[test]
    fn stream_without_message_start_or_message_delta_still_opens_and_finishes() {
        let mut t = StreamTranslator::new(true, 0, "m");
        let out = replay(
            &mut t,
            &[
                (
                    "content_block_delta",
                    r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#,
                ),
                ("message_stop", r#"{"type":"message_stop"}"#),
            ],
        );
        let chunks = chunks_as_values(&out);
        assert_eq!(chunks.len(), 4);
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": "x"}));
        assert_eq!(chunks[2]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[3]["choices"], json!([]));
        assert_eq!(out.last(), Some(&StreamOutput::Done));
        assert_eq!(t.finish_reason(), Some("stop"));
    }

    #[test]
    fn message_delta_finish_reasons_and_usage_updates() {
        for (reason, expected) in [
            (json!("end_turn"), "stop"),
            (json!("max_tokens"), "length"),
            (json!("refusal"), "content_filter"),
            (json!("pause_turn"), "stop"),
            (json!(null), "stop"),
        ] {
            let mut t = StreamTranslator::new(false, 0, "m");
            let data = json!({"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": 4, "input_tokens": 8, "cache_read_input_tokens": 2}}).to_string();
            let out = replay(
                &mut t,
                &[("message_start", DOC_STREAM[0].1), ("message_delta", &data)],
            );
            let chunks = chunks_as_values(&out);
            assert_eq!(chunks[1]["choices"][0]["finish_reason"], expected);
            assert_eq!(t.finish_reason(), Some(expected));
            assert_eq!(
                t.usage(),
                Usage {
                    prompt_tokens: 10,
                    completion_tokens: 4,
                    cached_tokens: 2
                }
            );
        }
    }

    #[test]
    fn error_event_becomes_openai_error_and_ends_stream() {
        let mut t = StreamTranslator::new(true, 0, "m");
        let out = replay(
            &mut t,
            &[
                ("message_start", DOC_STREAM[0].1),
                (
                    "error",
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                ),
                ("content_block_delta", DOC_STREAM[3].1),
                ("message_stop", "{}"),
            ],
        );
        assert_eq!(out.len(), 2);
        let StreamOutput::Error(e) = &out[1] else {
            panic!("expected error, got {:?}", out[1])
        };
        let e: Value = serde_json::from_str(e).expect("error is JSON");
        assert_eq!(
            e,
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded"}})
        );
        assert!(!t.has_content());

        for data in ["", "garbage", r#"{"type":"error"}"#] {
            let mut out = Vec::new();
            StreamTranslator::new(false, 0, "m").on_event("error", data, &mut out);
            let [StreamOutput::Error(e)] = out.as_slice() else {
                panic!("expected one error for {data:?}")
            };
            let e: Value = serde_json::from_str(e).expect("error is JSON");
            assert_eq!(e["error"]["type"], "server_error");
        }
        let mut out = Vec::new();
        StreamTranslator::new(false, 0, "m").on_event(
            "error",
            r#"{"error":{"type":"rate_limit_error","message":"slow"}}"#,
            &mut out,
        );
        let [StreamOutput::Error(e)] = out.as_slice() else {
            panic!("expected one error")
        };
        let e: Value = serde_json::from_str(e).expect("error is JSON");
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn malformed_events_produce_a_server_error_once() {
        let cases = [
            ("message_start", "not json"),
            ("message_start", r#"{"type":"message_start"}"#),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"x"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":0,"delta":{"type":"text_delta"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":0,"delta":{"type":"text_delta","text":5}}"#,
            ),
            (
                "content_block_delta",
                r#"{"index":"0","delta":{"type":"text_delta","text":"x"}}"#,
            ),
            ("message_delta", r#"{"usage":{"output_tokens":"many"}}"#),
            ("", "{{{"),
        ];
        for (event, data) in cases {
            let mut t = StreamTranslator::new(false, 0, "m");
            let mut out = Vec::new();
            t.on_event(event, data, &mut out);
            t.on_event("content_block_delta", DOC_STREAM[3].1, &mut out);
            let [StreamOutput::Error(e)] = out.as_slice() else {
                panic!("{event} {data}: {out:?}")
            };
            let e: Value = serde_json::from_str(e).expect("error is JSON");
            assert_eq!(e["error"]["type"], "server_error");
            assert!(e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("malformed")));
        }
        // Events whose payload is not needed are not judged.
        let mut out = Vec::new();
        let mut t = StreamTranslator::new(false, 0, "m");
        for event in ["ping", "content_block_stop", "brand_new_event"] {
            t.on_event(event, "garbage", &mut out);
        }
        assert!(out.is_empty());
    }
}
