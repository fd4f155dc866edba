//! A chat completion stream (as llmux relays it: `data: <chunk>\n\n` … `data: [DONE]\n\n`) →
//! the Responses event stream (`event: <type>\ndata: <json>\n\n`).

use bytes::Bytes;
use serde_json::{Map, Value};

use super::response::{
    call_item, envelope, mark_incomplete, message_item, outcome, refusal_part, text_part, usage,
    Echo,
};
use super::{new_id, object};

/// Translates one chat stream into Responses events, in the order OpenAI sends them: the
/// `response.created` / `response.in_progress` pair, then per output item its `added` event,
/// its deltas and its `done` events, then `response.completed` (or `response.incomplete`, or
/// `response.failed`). Every event carries a `sequence_number` from 0. Its memory is what
/// was streamed.
#[derive(Debug)]
pub struct EventStream {
    echo: Echo,
    seq: u64,
    started: bool,
    /// Closed items, in output order; the open item, if any, comes after them.
    output: Vec<Value>,
    open: Option<Open>,
    /// (chat tool call index, output index) of every function call so far.
    calls: Vec<(u64, usize)>,
    finish_reason: Option<String>,
    /// The chat usage object of the last chunk that had one.
    usage: Option<Value>,
    /// The final response, once completed, incomplete or failed.
    done: Option<Value>,
}

#[derive(Debug)]
enum Open {
    Message {
        id: String,
        /// Content parts so far; the last one is open.
        parts: Vec<(Part, String)>,
    },
    Call {
        id: String,
        chat_index: u64,
        call_id: String,
        name: String,
        arguments: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Text,
    Refusal,
}

impl Part {
    fn full(self, text: String) -> Value {
        match self {
            Part::Text => text_part(text),
            Part::Refusal => refusal_part(text),
        }
    }
}

impl Open {
    /// The item as it stands, with `status`.
    fn item(&self, status: &str) -> Value {
        match self {
            Open::Message { id, parts } => message_item(
                id.clone(),
                status,
                parts.iter().map(|(k, t)| k.full(t.clone())).collect(),
            ),
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => call_item(
                id.clone(),
                Some(call_id),
                name.clone(),
                arguments.clone(),
                status,
            ),
        }
    }
}

impl EventStream {
    pub fn new(echo: Echo) -> Self {
        EventStream {
            echo,
            seq: 0,
            started: false,
            output: Vec::new(),
            open: None,
            calls: Vec::new(),
            finish_reason: None,
            usage: None,
            done: None,
        }
    }

    /// The `response.created` and `response.in_progress` frames (once; [`feed`](Self::feed)
    /// and [`fail`](Self::fail) send them first if nobody asked).
    pub fn start(&mut self) -> Vec<Bytes> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        let r0 = envelope(
            &self.echo,
            "in_progress",
            Vec::new(),
            Value::Null,
            Value::Null,
            Value::Null,
        );
        vec![
            self.event("response.created", object([("response", r0.clone())])),
            self.event("response.in_progress", object([("response", r0)])),
        ]
    }

    /// One frame of the chat stream, holding one or more whole SSE events → the Responses
    /// frames they make. Nothing after the end (`[DONE]`, an error) is translated.
    pub fn feed(&mut self, frame: &[u8]) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.is_finished() {
            return out;
        }
        out.extend(self.start());
        let Ok(text) = std::str::from_utf8(frame) else {
            out.extend(self.fail(
                "invalid_upstream_response",
                "upstream sent a stream event that is not UTF-8",
            ));
            return out;
        };
        for data in super::super::stream::data_events(text) {
            self.chat_event(&data, &mut out);
        }
        out
    }

    /// Ends the stream with `response.failed`: `error:{code, message}` and the output so far.
    /// Nothing once the stream has ended.
    pub fn fail(&mut self, code: &str, message: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.is_finished() {
            return out;
        }
        out.extend(self.start());
        let mut output = std::mem::take(&mut self.output);
        if let Some(open) = self.open.take() {
            output.push(open.item("incomplete"));
        }
        let error = object([("code", code.into()), ("message", message.into())]);
        let r = envelope(
            &self.echo,
            "failed",
            output,
            usage(self.usage.as_ref()),
            error,
            Value::Null,
        );
        out.push(self.event("response.failed", object([("response", r.clone())])));
        self.done = Some(r);
        out
    }

    /// Whether the final event (completed, incomplete or failed) has been sent.
    pub fn is_finished(&self) -> bool {
        self.done.is_some()
    }

    /// The response as it stands: the final one once finished, else `in_progress` with the
    /// output so far.
    pub fn response(&self) -> Value {
        match &self.done {
            Some(r) => r.clone(),
            None => envelope(
                &self.echo,
                "in_progress",
                self.output_items(),
                usage(self.usage.as_ref()),
                Value::Null,
                Value::Null,
            ),
        }
    }

    /// The output items as they stand (an unfinished item with status `in_progress`).
    pub fn output_items(&self) -> Vec<Value> {
        if let Some(Value::Array(items)) = self.done.as_ref().and_then(|r| r.get("output")) {
            return items.clone();
        }
        let mut items = self.output.clone();
        items.extend(self.open.as_ref().map(|o| o.item("in_progress")));
        items
    }

    /// One Responses frame: `type` and `sequence_number` first, then `payload`'s fields.
    fn event(&mut self, kind: &str, payload: Value) -> Bytes {
        let mut data = format!(
            "event: {kind}\ndata: {{\"type\":{},\"sequence_number\":{}",
            Value::from(kind),
            self.seq
        );
        self.seq += 1;
        if let Value::Object(m) = &payload {
            if !m.is_empty() {
                let fields = serde_json::to_string(m).unwrap_or_else(|_| "{}".into());
                data.push(',');
                data.push_str(&fields[1..fields.len() - 1]);
            }
        }
        data.push_str("}\n\n");
        Bytes::from(data)
    }

    /// One chat SSE event's data.
    fn chat_event(&mut self, data: &str, out: &mut Vec<Bytes>) {
        if self.is_finished() {
            return;
        }
        if data == "[DONE]" {
            self.finish(out);
            return;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_str::<Value>(data) else {
            out.extend(self.fail(
                "invalid_upstream_response",
                "upstream sent a stream event that is not a JSON object",
            ));
            return;
        };
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let s = |k: &str| err.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
            let code = s("code").or(s("type")).unwrap_or("server_error").to_owned();
            let message = s("message").unwrap_or("upstream stream failed").to_owned();
            out.extend(self.fail(&code, &message));
            return;
        }
        if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        // Responses has one answer: choice 0.
        let first = choices
            .into_iter()
            .flatten()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0);
        let Some(choice) = first else {
            return;
        };
        if let Some(delta) = choice.get("delta") {
            let text = |k: &str| {
                delta
                    .get(k)
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            if let Some(t) = text("content") {
                self.text_delta(Part::Text, t, out);
            }
            if let Some(t) = text("refusal") {
                self.text_delta(Part::Refusal, t, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                    let id = call.get("id").and_then(Value::as_str);
                    self.call_delta(index, id, call.get("function"), out);
                }
            }
            // The deprecated single function call.
            if let Some(f) = delta.get("function_call").filter(|f| f.is_object()) {
                self.call_delta(u64::MAX, None, Some(f), out);
            }
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(r.to_owned());
        }
    }

    fn text_delta(&mut self, kind: Part, delta: &str, out: &mut Vec<Bytes>) {
        if matches!(self.open, Some(Open::Call { .. })) {
            self.close(false, out);
        }
        let output_index = self.output.len();
        if self.open.is_none() {
            let id = new_id("msg_");
            let item = message_item(id.clone(), "in_progress", Vec::new());
            out.push(self.event(
                "response.output_item.added",
                object([("output_index", output_index.into()), ("item", item)]),
            ));
            self.open = Some(Open::Message {
                id,
                parts: Vec::new(),
            });
        }
        let Some(Open::Message { id, mut parts }) = self.open.take() else {
            return;
        };
        if parts.last().map(|(k, _)| *k) != Some(kind) {
            if let Some((k, text)) = parts.last() {
                let ids = ids(&id, output_index, parts.len() - 1);
                self.close_part(*k, text.clone(), ids, out);
            }
            parts.push((kind, String::new()));
            let part = kind.full(String::new());
            out.push(self.event(
                "response.content_part.added",
                with(ids(&id, output_index, parts.len() - 1), [("part", part)]),
            ));
        }
        let content_index = parts.len() - 1;
        if let Some((_, text)) = parts.last_mut() {
            text.push_str(delta);
        }
        let ids = ids(&id, output_index, content_index);
        let frame = match kind {
            Part::Text => self.event(
                "response.output_text.delta",
                with(
                    ids,
                    [
                        ("delta", delta.into()),
                        ("logprobs", Value::Array(Vec::new())),
                    ],
                ),
            ),
            Part::Refusal => self.event(
                "response.refusal.delta",
                with(ids, [("delta", delta.into())]),
            ),
        };
        out.push(frame);
        self.open = Some(Open::Message { id, parts });
    }

    /// The `done` events of a message's content part.
    fn close_part(&mut self, kind: Part, text: String, ids: Value, out: &mut Vec<Bytes>) {
        let done = match kind {
            Part::Text => self.event(
                "response.output_text.done",
                with(
                    ids.clone(),
                    [
                        ("text", text.clone().into()),
                        ("logprobs", Value::Array(Vec::new())),
                    ],
                ),
            ),
            Part::Refusal => self.event(
                "response.refusal.done",
                with(ids.clone(), [("refusal", text.clone().into())]),
            ),
        };
        out.push(done);
        out.push(self.event(
            "response.content_part.done",
            with(ids, [("part", kind.full(text))]),
        ));
    }

    fn call_delta(
        &mut self,
        chat_index: u64,
        call_id: Option<&str>,
        function: Option<&Value>,
        out: &mut Vec<Bytes>,
    ) {
        let field = |k: &str| {
            function
                .and_then(|f| f.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let (name, arguments) = (field("name"), field("arguments"));
        let continues = match &self.open {
            Some(Open::Call {
                chat_index: i,
                call_id: open_id,
                ..
            }) => *i == chat_index && call_id.is_none_or(|c| c == open_id.as_str()),
            _ => false,
        };
        if !continues {
            let earlier = self.calls.iter().find(|(i, _)| *i == chat_index);
            if let (None, Some(&(_, at))) = (call_id, earlier) {
                // More arguments for a call already closed (calls streamed interleaved):
                // no event can carry them any more, but the final response does.
                if let Some(Value::Object(item)) = self.output.get_mut(at) {
                    if let Some(Value::String(a)) = item.get_mut("arguments") {
                        a.push_str(arguments);
                    }
                }
                return;
            }
            self.close(false, out);
            let id = new_id("fc_");
            let call_id = call_id.map_or_else(|| new_id("call_"), str::to_owned);
            let output_index = self.output.len();
            self.calls.push((chat_index, output_index));
            let open = Open::Call {
                id,
                chat_index,
                call_id,
                name: name.to_owned(),
                arguments: String::new(),
            };
            let item = open.item("in_progress");
            out.push(self.event(
                "response.output_item.added",
                object([("output_index", output_index.into()), ("item", item)]),
            ));
            self.open = Some(open);
        }
        let output_index = self.output.len();
        let Some(Open::Call {
            id,
            name: open_name,
            arguments: args,
            ..
        }) = &mut self.open
        else {
            return;
        };
        if open_name.is_empty() {
            open_name.push_str(name);
        }
        if arguments.is_empty() {
            return;
        }
        args.push_str(arguments);
        let id = id.clone();
        out.push(self.event(
            "response.function_call_arguments.delta",
            object([
                ("item_id", id.into()),
                ("output_index", output_index.into()),
                ("delta", arguments.into()),
            ]),
        ));
    }

    /// Closes the open item, if any, with its `done` events. `incomplete`: the answer was cut
    /// short, so is this item (the last).
    fn close(&mut self, incomplete: bool, out: &mut Vec<Bytes>) {
        let Some(open) = self.open.take() else {
            return;
        };
        let output_index = self.output.len();
        match &open {
            Open::Message { id, parts } => {
                if let Some((kind, text)) = parts.last() {
                    let ids = ids(id, output_index, parts.len() - 1);
                    self.close_part(*kind, text.clone(), ids, out);
                }
            }
            Open::Call { id, arguments, .. } => {
                out.push(self.event(
                    "response.function_call_arguments.done",
                    object([
                        ("item_id", id.clone().into()),
                        ("output_index", output_index.into()),
                        ("arguments", arguments.clone().into()),
                    ]),
                ));
            }
        }
        let item = open.item(if incomplete {
            "incomplete"
        } else {
            "completed"
        });
        out.push(self.event(
            "response.output_item.done",
            object([
                ("output_index", output_index.into()),
                ("item", item.clone()),
            ]),
        ));
        self.output.push(item);
    }

    /// `[DONE]`: closes what is open and sends `response.completed` or `response.incomplete`.
    fn finish(&mut self, out: &mut Vec<Bytes>) {
        let (status, incomplete) = outcome(self.finish_reason.as_deref());
        let cut = status == "incomplete";
        if self.open.is_some() {
            self.close(cut, out);
        } else if cut {
            mark_incomplete(&mut self.output);
        }
        let output = std::mem::take(&mut self.output);
        let r = envelope(
            &self.echo,
            status,
            output,
            usage(self.usage.as_ref()),
            Value::Null,
            incomplete,
        );
        let kind = if cut {
            "response.incomplete"
        } else {
            "response.completed"
        };
        out.push(self.event(kind, object([("response", r.clone())])));
        self.done = Some(r);
    }
}

/// `item_id`, `output_index`, `content_index` of a message's content part.
fn ids(item_id: &str, output_index: usize, content_index: usize) -> Value {
    object([
        ("item_id", item_id.into()),
        ("output_index", output_index.into()),
        ("content_index", content_index.into()),
    ])
}

/// `base` (an object) with more fields.
fn with<const N: usize>(base: Value, fields: [(&str, Value); N]) -> Value {
    let mut m = match base {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in fields {
        m.insert(k.to_owned(), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::super::from_chat;
    use super::super::response::tests::{fixture_echo, ids_aside};
    use super::*;
    use serde_json::json;

    /// Each frame's (event type, data), checking the framing and the sequence numbers on the
    /// way: `event:` equals the data's `type`, and numbers run from 0 over all `frames`.
    fn parse(frames: &[Bytes]) -> Vec<(String, Value)> {
        frames
            .iter()
            .enumerate()
            .map(|(n, f)| {
                let text = std::str::from_utf8(f).unwrap();
                let rest = text.strip_prefix("event: ").unwrap();
                let (kind, rest) = rest.split_once("\ndata: ").unwrap();
                let data = rest.strip_suffix("\n\n").unwrap();
                assert!(!data.contains('\n'));
                assert!(data.starts_with(&format!(
                    "{{\"type\":\"{kind}\",\"sequence_number\":{n}"
                )));
                let v: Value = serde_json::from_str(data).unwrap();
                assert_eq!(v["type"], kind);
                assert_eq!(v["sequence_number"], n);
                (kind.to_owned(), v)
            })
            .collect()
    }

    fn kinds(events: &[(String, Value)]) -> Vec<&str> {
        events.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn sse(chunk: Value) -> String {
        format!("data: {chunk}\n\n")
    }

    fn chunk(delta: Value, finish: Value) -> String {
        sse(
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}),
        )
    }

    fn usage_chunk() -> String {
        sse(
            json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48,
            "prompt_tokens_details": {"cached_tokens": 32}, "completion_tokens_details": {"reasoning_tokens": 2}}}),
        )
    }

    const DONE: &str = "data: [DONE]\n\n";

    fn text_stream(finish: &str) -> Vec<String> {
        vec![
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "18"}), Value::Null),
            chunk(json!({"content": "C"}), Value::Null),
            chunk(json!({"content": "."}), Value::Null),
            chunk(json!({}), json!(finish)),
            usage_chunk(),
            DONE.to_owned(),
        ]
    }

    fn run(frames: &[String]) -> (EventStream, Vec<(String, Value)>) {
        let mut s = EventStream::new(fixture_echo());
        let mut out = s.start();
        for f in frames {
            out.extend(s.feed(f.as_bytes()));
        }
        (s, parse(&out))
    }

    fn equivalent(message: Value, finish: &str) -> Value {
        let chat = json!({"choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48,
            "prompt_tokens_details": {"cached_tokens": 32}, "completion_tokens_details": {"reasoning_tokens": 2}}});
        from_chat(&chat, &fixture_echo()).unwrap()
    }

    const TEXT_KINDS: [&str; 11] = [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ];

    #[test]
    fn a_text_stream_gives_the_wire_doc_event_sequence() {
        let (s, events) = run(&text_stream("stop"));
        assert_eq!(kinds(&events), TEXT_KINDS);

        let r0 = &events[0].1["response"];
        assert_eq!(r0["status"], "in_progress");
        assert_eq!(r0["output"], json!([]));
        assert_eq!(r0["usage"], Value::Null);
        assert_eq!(r0["id"], "resp_1");
        assert_eq!(events[1].1["response"], *r0);

        let item_id = events[2].1["item"]["id"].as_str().unwrap().to_owned();
        assert!(item_id.starts_with("msg_"));
        let strip = |v: &Value| {
            let mut m = v.as_object().unwrap().clone();
            m.remove("type");
            m.remove("sequence_number");
            Value::Object(m)
        };
        let i = |extra: Value| {
            let mut m = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
            m.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            m
        };
        let part = json!({"type": "output_text", "text": "18C.", "annotations": []});
        let expected = [
            json!({"output_index": 0, "item": {"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []}}),
            i(json!({"part": {"type": "output_text", "text": "", "annotations": []}})),
            i(json!({"delta": "18", "logprobs": []})),
            i(json!({"delta": "C", "logprobs": []})),
            i(json!({"delta": ".", "logprobs": []})),
            i(json!({"text": "18C.", "logprobs": []})),
            i(json!({"part": part})),
            json!({"output_index": 0, "item": {"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]}}),
        ];
        for (n, want) in expected.iter().enumerate() {
            assert_eq!(strip(&events[n + 2].1), *want, "{}", events[n + 2].0);
        }

        let done = &events[10].1["response"];
        let want = equivalent(json!({"role": "assistant", "content": "18C."}), "stop");
        assert_eq!(ids_aside(done), ids_aside(&want));
        assert_eq!(done["usage"]["input_tokens_details"]["cached_tokens"], 32);
        assert_eq!(done["output"][0]["id"], item_id);
        assert!(s.is_finished());
        assert_eq!(s.response(), *done);
        assert_eq!(s.output_items(), done["output"].as_array().unwrap().clone());
    }

    #[test]
    fn several_events_in_one_frame() {
        let mut s = EventStream::new(fixture_echo());
        // No start(): feed sends the opening pair itself.
        let out = s.feed(text_stream("stop").concat().as_bytes());
        let events = parse(&out);
        assert_eq!(kinds(&events), TEXT_KINDS);
        // Nothing after the end.
        assert!(s.feed(DONE.as_bytes()).is_empty());
        assert!(s.fail("x", "y").is_empty());
    }

    #[test]
    fn text_then_two_tool_calls() {
        let call = |index: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": index, "function": {"arguments": args}});
            if let Some(id) = id {
                c["id"] = json!(id);
                c["type"] = json!("function");
            }
            if let Some(name) = name {
                c["function"]["name"] = json!(name);
            }
            chunk(json!({"tool_calls": [c]}), Value::Null)
        };
        let frames = [
            chunk(
                json!({"role": "assistant", "content": "Checking."}),
                Value::Null,
            ),
            call(0, Some("call_1"), Some("wx"), ""),
            call(0, None, None, "{\"city\""),
            call(0, None, None, ":\"Paris\"}"),
            call(1, Some("call_2"), Some("wx"), "{\"city\":\"Rome\"}"),
            chunk(json!({}), json!("tool_calls")),
            usage_chunk(),
            DONE.to_owned(),
        ];
        let (s, events) = run(&frames);
        assert_eq!(
            kinds(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let e = |n: usize| &events[n].1;
        assert_eq!(
            ids_aside(&e(8)["item"]),
            json!({"type": "function_call", "id": "fc_", "call_id": "call_1", "name": "wx", "arguments": "", "status": "in_progress"})
        );
        assert_eq!(e(8)["output_index"], 1);
        let fc1 = e(8)["item"]["id"].clone();
        assert_eq!(
            (&e(9)["item_id"], &e(9)["delta"]),
            (&fc1, &json!("{\"city\""))
        );
        assert_eq!(e(10)["delta"], ":\"Paris\"}");
        assert_eq!(e(11)["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(
            (&e(11)["output_index"], &e(12)["output_index"]),
            (&json!(1), &json!(1))
        );
        assert_eq!(e(12)["item"]["status"], "completed");
        assert_eq!(e(13)["output_index"], 2);
        assert_eq!(e(13)["item"]["call_id"], "call_2");
        assert_eq!(e(15)["arguments"], "{\"city\":\"Rome\"}");

        let want = equivalent(
            json!({"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Rome\"}"}}]}),
            "tool_calls",
        );
        assert_eq!(ids_aside(&e(17)["response"]), ids_aside(&want));
        assert_eq!(s.output_items().len(), 3);
    }

    #[test]
    fn a_stream_cut_by_length_is_incomplete() {
        let (s, events) = run(&text_stream("length"));
        let (kind, last) = events.last().unwrap();
        assert_eq!(kind, "response.incomplete");
        let r = &last["response"];
        assert_eq!(r["status"], "incomplete");
        assert_eq!(
            r["incomplete_details"],
            json!({"reason": "max_output_tokens"})
        );
        assert_eq!(events[events.len() - 2].1["item"]["status"], "incomplete");
        let want = equivalent(json!({"role": "assistant", "content": "18C."}), "length");
        assert_eq!(ids_aside(r), ids_aside(&want));
        assert!(s.is_finished());
    }

    #[test]
    fn an_error_chunk_fails_the_response() {
        let frames = [
            chunk(json!({"role": "assistant", "content": "18"}), Value::Null),
            sse(
                json!({"error": {"message": "overloaded", "type": "server_error", "code": "overloaded_error", "param": null}}),
            ),
            chunk(json!({"content": "C."}), Value::Null),
            DONE.to_owned(),
        ];
        let (s, events) = run(&frames);
        assert_eq!(
            kinds(&events),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.failed",
            ]
        );
        let r = &events[5].1["response"];
        assert_eq!(r["status"], "failed");
        assert_eq!(
            r["error"],
            json!({"code": "overloaded_error", "message": "overloaded"})
        );
        assert_eq!(r["output"][0]["content"][0]["text"], "18");
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert!(s.is_finished());
        assert_eq!(s.response(), *r);

        // Without a code, the error's type names it.
        let (_, events) = run(&[sse(
            json!({"error": {"message": "m", "type": "rate_limit_error"}}),
        )]);
        assert_eq!(events[2].1["response"]["error"]["code"], "rate_limit_error");
        // A chunk that is not JSON fails too.
        let (_, events) = run(&["data: {nope\n\n".to_owned()]);
        assert_eq!(events.last().unwrap().0, "response.failed");
    }

    #[test]
    fn fail_ends_a_stream_midway_with_the_output_so_far() {
        let mut s = EventStream::new(fixture_echo());
        let mut out = s.start();
        out.extend(
            s.feed(
                chunk(
                    json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "wx", "arguments": "{\"ci"}}]}),
                    Value::Null,
                )
                .as_bytes(),
            ),
        );
        assert!(!s.is_finished());
        let items = s.output_items();
        assert_eq!(items[0]["status"], "in_progress");
        assert_eq!(items[0]["arguments"], "{\"ci");
        assert_eq!(s.response()["status"], "in_progress");
        out.extend(s.fail("stream_interrupted", "upstream went away"));
        let events = parse(&out);
        let (kind, last) = events.last().unwrap();
        assert_eq!(kind, "response.failed");
        assert_eq!(last["response"]["output"][0]["call_id"], "call_1");
        assert_eq!(last["response"]["error"]["code"], "stream_interrupted");
        assert!(s.fail("again", "no").is_empty());
        assert!(s.start().is_empty());
    }

    #[test]
    fn a_refusal_is_its_own_content_part() {
        let frames = [
            chunk(
                json!({"role": "assistant", "refusal": "I can't"}),
                Value::Null,
            ),
            chunk(json!({"refusal": " help."}), Value::Null),
            chunk(json!({}), json!("stop")),
            DONE.to_owned(),
        ];
        let (_, events) = run(&frames);
        assert_eq!(
            kinds(&events)[2..],
            [
                "response.output_item.added",
                "response.content_part.added",
                "response.refusal.delta",
                "response.refusal.delta",
                "response.refusal.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert_eq!(events[6].1["refusal"], "I can't help.");
        let r = &events[9].1["response"];
        let want = from_chat(
            &json!({"choices": [{"message": {"content": null, "refusal": "I can't help."}, "finish_reason": "stop"}]}),
            &fixture_echo(),
        )
        .unwrap();
        assert_eq!(ids_aside(r), ids_aside(&want));
    }
}
