//! The response cache's stream codec: converts between OpenAI's streamed (SSE) answers and its
//! plain JSON answers, so the cache stores only one form, the plain answer.
//!
//! - [`Recorder`] watches a streamed miss's frames while they are relayed to the client and,
//!   if the stream ends properly with `[DONE]`, rebuilds the answer OpenAI would have sent
//!   without `stream`. A stream is therefore stored without buffering it before the client.
//!   Its memory is bounded: past `max_bytes`, or at an error event or anything it cannot
//!   parse, it gives up (the answer is not stored).
//! - [`replay`] turns a stored answer back into the chunk sequence of a real OpenAI stream
//!   (role, content pieces, tool calls, finish, optional usage chunk, `[DONE]`), so a streaming
//!   client is served from the cache too — which Portkey's OSS gateway cannot do.
//!
//! Both sides are pure and total: no input makes them panic.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::providers::{Endpoint, Usage};

/// At most this many chars of content per replayed chunk, so clients see a real stream.
const PIECE_CHARS: usize = 64;

const DONE: &[u8] = b"data: [DONE]\n\n";

/// The chunk fields copied to the answer (and back), in this order.
const HEAD: [&str; 4] = ["id", "created", "model", "system_fingerprint"];

/// Rebuilds the plain answer of a streamed one from the frames sent to the client.
#[derive(Debug)]
pub struct Recorder {
    endpoint: Endpoint,
    max_bytes: usize,
    fed: usize,
    poisoned: bool,
    done: bool,
    /// The first non-null value of each [`HEAD`] field.
    head: [Option<Value>; 4],
    choices: BTreeMap<u64, Choice>,
    /// The last `usage` object a chunk carried.
    usage: Option<Value>,
}

/// One choice being accumulated: `content` (chat) or `text` (completions) and the rest.
#[derive(Debug, Default)]
struct Choice {
    role: Option<Value>,
    text: String,
    refusal: Option<String>,
    function_call: Option<Call>,
    tool_calls: BTreeMap<u64, Call>,
    /// Each array of the chunks' `logprobs` objects, concatenated.
    logprobs: Option<Map<String, Value>>,
    finish_reason: Value,
}

/// A tool call (or legacy function call) being accumulated.
#[derive(Debug, Default)]
struct Call {
    id: Option<Value>,
    kind: Option<Value>,
    name: Option<Value>,
    arguments: String,
}

impl Recorder {
    pub fn new(endpoint: Endpoint, max_bytes: usize) -> Recorder {
        Recorder {
            endpoint,
            max_bytes,
            fed: 0,
            // Embeddings are never streamed.
            poisoned: endpoint == Endpoint::Embeddings,
            done: false,
            head: Default::default(),
            choices: BTreeMap::new(),
            usage: None,
        }
    }

    /// Takes one frame as sent to the client: one or more whole SSE events.
    pub fn feed(&mut self, frame: &[u8]) {
        if self.poisoned {
            return;
        }
        self.fed = self.fed.saturating_add(frame.len());
        if self.fed > self.max_bytes || self.absorb_frame(frame).is_none() {
            self.poisoned = true;
            // Give the memory back now: the stream may go on for long.
            self.head = Default::default();
            self.choices = BTreeMap::new();
            self.usage = None;
        }
    }

    /// The plain answer's JSON, if the stream ended with `[DONE]`, had at least one choice and
    /// did not poison the recorder. `usage`, when known, replaces any the chunks carried.
    pub fn finish(self, usage: Option<Usage>) -> Option<Bytes> {
        if self.poisoned || !self.done || self.choices.is_empty() {
            return None;
        }
        let chat = self.endpoint == Endpoint::Chat;
        let [id, created, model, fingerprint] = self.head;
        let mut out = Map::new();
        out.insert("id".into(), id.unwrap_or(Value::Null));
        let object = if chat {
            "chat.completion"
        } else {
            "text_completion"
        };
        out.insert("object".into(), object.into());
        out.insert("created".into(), created.unwrap_or(Value::Null));
        out.insert("model".into(), model.unwrap_or(Value::Null));
        if let Some(f) = fingerprint {
            out.insert("system_fingerprint".into(), f);
        }
        let choices = self.choices.into_iter();
        let choices = choices.map(|(i, c)| if chat { c.chat(i) } else { c.completion(i) });
        out.insert("choices".into(), choices.collect());
        if let Some(u) = usage.map(usage_json).or(self.usage) {
            out.insert("usage".into(), u);
        }
        Some(Value::Object(out).to_string().into())
    }

    /// None: the frame is not something this recorder can faithfully record.
    fn absorb_frame(&mut self, frame: &[u8]) -> Option<()> {
        let text = std::str::from_utf8(frame).ok()?;
        for data in crate::providers::stream::data_events(text) {
            self.absorb_event(&data)?;
        }
        Some(())
    }

    fn absorb_event(&mut self, data: &str) -> Option<()> {
        if self.done {
            return None; // nothing may follow [DONE]
        }
        if data == "[DONE]" {
            self.done = true;
            return Some(());
        }
        let Ok(Value::Object(mut chunk)) = serde_json::from_str(data) else {
            return None;
        };
        if chunk.contains_key("error") {
            return None;
        }
        for (slot, key) in self.head.iter_mut().zip(HEAD) {
            keep(slot, chunk.get(key));
        }
        if let Some(u) = chunk.remove("usage").filter(Value::is_object) {
            self.usage = Some(u);
        }
        match chunk.remove("choices") {
            None | Some(Value::Null) => Some(()),
            Some(Value::Array(choices)) => {
                choices.into_iter().try_for_each(|c| self.absorb_choice(c))
            }
            Some(_) => None,
        }
    }

    fn absorb_choice(&mut self, choice: Value) -> Option<()> {
        let Value::Object(mut c) = choice else {
            return None;
        };
        let index = match c.get("index") {
            None => 0,
            Some(i) => i.as_u64()?,
        };
        let choice = self.choices.entry(index).or_default();
        if let Some(Value::Object(lp)) = c.remove("logprobs") {
            for (key, value) in lp {
                if let Value::Array(items) = value {
                    let merged = choice.logprobs.get_or_insert_with(Map::new);
                    let slot = merged
                        .entry(key)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(all) = slot {
                        all.extend(items);
                    }
                }
            }
        }
        if let Some(reason) = c.remove("finish_reason").filter(|r| !r.is_null()) {
            choice.finish_reason = reason;
        }
        if self.endpoint != Endpoint::Chat {
            return push_str(&mut choice.text, c.get("text"));
        }
        let Some(Value::Object(delta)) = c.remove("delta") else {
            return Some(());
        };
        keep(&mut choice.role, delta.get("role"));
        push_str(&mut choice.text, delta.get("content"))?;
        if let Some(r) = delta.get("refusal").filter(|r| !r.is_null()) {
            push_str(choice.refusal.get_or_insert_with(String::new), Some(r))?;
        }
        if let Some(f) = delta.get("function_call").filter(|f| !f.is_null()) {
            choice
                .function_call
                .get_or_insert_with(Call::default)
                .merge_function(f)?;
        }
        match delta.get("tool_calls") {
            None | Some(Value::Null) => {}
            Some(Value::Array(calls)) => {
                for call in calls {
                    let index = call.get("index")?.as_u64()?;
                    let slot = choice.tool_calls.entry(index).or_default();
                    keep(&mut slot.id, call.get("id"));
                    keep(&mut slot.kind, call.get("type"));
                    if let Some(f) = call.get("function").filter(|f| !f.is_null()) {
                        slot.merge_function(f)?;
                    }
                }
            }
            Some(_) => return None,
        }
        Some(())
    }
}

impl Choice {
    fn chat(self, index: u64) -> Value {
        let mut message = Map::new();
        let role = self.role.unwrap_or_else(|| "assistant".into());
        message.insert("role".into(), role);
        let other =
            self.refusal.is_some() || self.function_call.is_some() || !self.tool_calls.is_empty();
        let content = if self.text.is_empty() && other {
            Value::Null
        } else {
            self.text.into()
        };
        message.insert("content".into(), content);
        if let Some(r) = self.refusal {
            message.insert("refusal".into(), r.into());
        }
        if let Some(f) = self.function_call {
            let f = json!({"name": f.name, "arguments": f.arguments});
            message.insert("function_call".into(), f);
        }
        if !self.tool_calls.is_empty() {
            let calls = self.tool_calls.into_values().map(|c| {
                json!({
                    "id": c.id,
                    "type": c.kind.unwrap_or_else(|| "function".into()),
                    "function": {"name": c.name, "arguments": c.arguments},
                })
            });
            message.insert("tool_calls".into(), calls.collect());
        }
        json!({
            "index": index,
            "message": message,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        })
    }

    fn completion(self, index: u64) -> Value {
        json!({
            "text": self.text,
            "index": index,
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        })
    }
}

impl Call {
    /// Merges a `function` delta: the first name, the arguments concatenated.
    fn merge_function(&mut self, f: &Value) -> Option<()> {
        keep(&mut self.name, f.get("name"));
        push_str(&mut self.arguments, f.get("arguments"))
    }
}

/// Sets `slot` to `value` unless it is already set or `value` is null.
fn keep(slot: &mut Option<Value>, value: Option<&Value>) {
    if slot.is_none() {
        *slot = value.filter(|v| !v.is_null()).cloned();
    }
}

/// Appends a string field; None if it is neither a string nor null.
fn push_str(to: &mut String, value: Option<&Value>) -> Option<()> {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => to.push_str(s),
        Some(_) => return None,
    }
    Some(())
}

fn usage_json(u: Usage) -> Value {
    let mut out = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens.saturating_add(u.completion_tokens),
    });
    if u.cached_tokens > 0 {
        out["prompt_tokens_details"] = json!({"cached_tokens": u.cached_tokens});
    }
    out
}

/// The SSE frames, one event each, that OpenAI would stream for the stored plain `answer`.
/// With `include_usage` (the request's `stream_options.include_usage`), every chunk carries
/// `"usage": null` and a last chunk without choices carries the answer's usage. None if
/// `answer` is no chat or text completion (or for embeddings).
pub fn replay(endpoint: Endpoint, answer: &[u8], include_usage: bool) -> Option<Vec<Bytes>> {
    let object = match endpoint {
        Endpoint::Chat => "chat.completion.chunk",
        Endpoint::Completions => "text_completion",
        Endpoint::Embeddings | Endpoint::Responses => return None,
    };
    let Ok(Value::Object(answer)) = serde_json::from_slice(answer) else {
        return None;
    };
    let choices = answer.get("choices")?.as_array()?;
    let mut base = Map::new();
    for key in HEAD {
        let value = answer.get(key).cloned().unwrap_or(Value::Null);
        if key != "system_fingerprint" || !value.is_null() {
            base.insert(key.into(), value);
        }
        if key == "id" {
            base.insert("object".into(), object.into());
        }
    }
    if include_usage {
        base.insert("usage".into(), Value::Null);
    }
    let mut frames = Vec::new();
    for (position, choice) in choices.iter().enumerate() {
        let choice = choice.as_object()?;
        let index = match choice.get("index") {
            None => position as u64,
            Some(i) => i.as_u64()?,
        };
        let mut out = Emitter {
            base: &base,
            index,
            frames: &mut frames,
            logprobs: choice.get("logprobs").cloned().unwrap_or(Value::Null),
        };
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        match endpoint {
            Endpoint::Chat => out.chat(choice.get("message"), finish)?,
            _ => out.completion(choice.get("text"), finish)?,
        }
    }
    if include_usage {
        if let Some(usage) = answer.get("usage").filter(|u| u.is_object()) {
            let mut last = base.clone();
            last.insert("choices".into(), json!([]));
            last.insert("usage".into(), usage.clone());
            frames.push(event(last));
        }
    }
    frames.push(Bytes::from_static(DONE));
    Some(frames)
}

/// Writes one choice's chunks.
struct Emitter<'a> {
    base: &'a Map<String, Value>,
    index: u64,
    frames: &'a mut Vec<Bytes>,
    /// The choice's logprobs, sent whole with its first chunk.
    logprobs: Value,
}

impl Emitter<'_> {
    fn push(&mut self, mut choice: Map<String, Value>, finish: Value) {
        choice.insert("index".into(), self.index.into());
        choice.insert("logprobs".into(), std::mem::take(&mut self.logprobs));
        choice.insert("finish_reason".into(), finish);
        let mut chunk = self.base.clone();
        chunk.insert("choices".into(), json!([choice]));
        self.frames.push(event(chunk));
    }

    fn delta(&mut self, delta: Value, finish: Value) {
        let mut choice = Map::new();
        choice.insert("delta".into(), delta);
        self.push(choice, finish);
    }

    fn chat(&mut self, message: Option<&Value>, finish: Value) -> Option<()> {
        let empty = Map::new();
        let message = match message {
            None | Some(Value::Null) => &empty,
            Some(m) => m.as_object()?,
        };
        let role = message
            .get("role")
            .cloned()
            .unwrap_or_else(|| "assistant".into());
        let content = text_of(message.get("content"))?;
        let first = if content.is_some() {
            "".into()
        } else {
            Value::Null
        };
        self.delta(json!({"role": role, "content": first}), Value::Null);
        for piece in pieces(content.unwrap_or_default()) {
            self.delta(json!({"content": piece}), Value::Null);
        }
        for piece in pieces(text_of(message.get("refusal"))?.unwrap_or_default()) {
            self.delta(json!({"refusal": piece}), Value::Null);
        }
        if let Some(f) = message.get("function_call").filter(|f| !f.is_null()) {
            let name = f.get("name").cloned().unwrap_or(Value::Null);
            let arguments = text_of(f.get("arguments"))?.unwrap_or_default();
            let start = json!({"function_call": {"name": name, "arguments": ""}});
            self.delta(start, Value::Null);
            let rest = json!({"function_call": {"arguments": arguments}});
            self.delta(rest, Value::Null);
        }
        let calls = match message.get("tool_calls") {
            None | Some(Value::Null) => &[][..],
            Some(calls) => calls.as_array()?,
        };
        for (i, call) in calls.iter().enumerate() {
            let f = call.get("function");
            let field = |v: Option<&Value>, key| v.and_then(|v| v.get(key)).cloned();
            let start = json!({"tool_calls": [{
                "index": i,
                "id": field(Some(call), "id"),
                "type": field(Some(call), "type").unwrap_or_else(|| "function".into()),
                "function": {"name": field(f, "name"), "arguments": ""},
            }]});
            self.delta(start, Value::Null);
            let arguments = text_of(f.and_then(|f| f.get("arguments")))?.unwrap_or_default();
            let rest = json!({"tool_calls": [{"index": i, "function": {"arguments": arguments}}]});
            self.delta(rest, Value::Null);
        }
        self.delta(json!({}), finish);
        Some(())
    }

    fn completion(&mut self, text: Option<&Value>, finish: Value) -> Option<()> {
        let text = text_of(text)?.unwrap_or_default();
        let mut pieces: Vec<&str> = pieces(text).collect();
        if pieces.is_empty() {
            pieces.push("");
        }
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let mut choice = Map::new();
            choice.insert("text".into(), piece.into());
            let reason = if i == last {
                finish.clone()
            } else {
                Value::Null
            };
            self.push(choice, reason);
        }
        Some(())
    }
}

/// A string field: Some(None) if absent or null, None if it is something else.
fn text_of(value: Option<&Value>) -> Option<Option<&str>> {
    match value {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s)),
        Some(_) => None,
    }
}

/// `s` in pieces of at most [`PIECE_CHARS`] chars, cut on char boundaries.
fn pieces(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = rest
            .char_indices()
            .nth(PIECE_CHARS)
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

fn event(chunk: Map<String, Value>) -> Bytes {
    format!("data: {}\n\n", Value::Object(chunk)).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(b: &[u8]) -> Value {
        serde_json::from_slice(b).expect("valid JSON")
    }

    fn record(endpoint: Endpoint, frames: &[Bytes], usage: Option<Usage>) -> Option<Value> {
        let mut r = Recorder::new(endpoint, 1 << 20);
        for f in frames {
            r.feed(f);
        }
        r.finish(usage).map(|b| parse(&b))
    }

    fn round_trip(endpoint: Endpoint, answer: &Value, include_usage: bool, usage: Option<Usage>) {
        let frames = replay(endpoint, answer.to_string().as_bytes(), include_usage)
            .expect("a replayable answer");
        assert_eq!(record(endpoint, &frames, usage).as_ref(), Some(answer));
    }

    fn chat_answer(choices: Value) -> Value {
        json!({
            "id": "chatcmpl-abc", "object": "chat.completion", "created": 1_700_000_000,
            "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
            "choices": choices,
            "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21},
        })
    }

    fn stop(index: u64, content: &str) -> Value {
        json!({
            "index": index,
            "message": {"role": "assistant", "content": content},
            "logprobs": null, "finish_reason": "stop",
        })
    }

    /// The events of a frame, checking it holds whole `data: …\n\n` events.
    fn events(frame: &[u8]) -> Vec<String> {
        let text = std::str::from_utf8(frame).expect("UTF-8");
        let body = text.strip_suffix("\n\n").expect("ends an event");
        body.split("\n\n")
            .map(|e| e.strip_prefix("data: ").expect("a data event").to_owned())
            .collect()
    }

    #[test]
    fn round_trip_plain_content() {
        round_trip(
            Endpoint::Chat,
            &chat_answer(json!([stop(0, "Hello there!")])),
            true,
            None,
        );
        round_trip(
            Endpoint::Chat,
            &chat_answer(json!([stop(0, "")])),
            true,
            None,
        );
    }

    #[test]
    fn round_trip_two_choices() {
        let answer = chat_answer(json!([stop(0, "first"), stop(1, "second")]));
        round_trip(Endpoint::Chat, &answer, true, None);
    }

    #[test]
    fn round_trip_tool_calls() {
        let answer = chat_answer(json!([{
            "index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "call_2", "type": "function",
                 "function": {"name": "get_time", "arguments": "{\"tz\":\"CET\"}"}},
            ]},
            "logprobs": null, "finish_reason": "tool_calls",
        }]));
        round_trip(Endpoint::Chat, &answer, true, None);
    }

    #[test]
    fn round_trip_refusal_and_logprobs() {
        let lp = json!({"content": [
            {"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []},
        ]});
        let answer = chat_answer(json!([
            {"index": 0, "message": {"role": "assistant", "content": "Hi"},
             "logprobs": lp, "finish_reason": "stop"},
            {"index": 1, "message": {"role": "assistant", "content": null, "refusal": "No."},
             "logprobs": null, "finish_reason": "stop"},
        ]));
        round_trip(Endpoint::Chat, &answer, true, None);
    }

    #[test]
    fn round_trip_text_completion() {
        let answer = json!({
            "id": "cmpl-1", "object": "text_completion", "created": 1_700_000_000,
            "model": "gpt-3.5-turbo-instruct",
            "choices": [
                {"text": "x".repeat(150), "index": 0, "logprobs": null, "finish_reason": "length"},
                {"text": "", "index": 1, "logprobs": null, "finish_reason": "stop"},
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 16, "total_tokens": 19},
        });
        round_trip(Endpoint::Completions, &answer, true, None);
    }

    #[test]
    fn round_trip_with_and_without_usage() {
        let mut answer = chat_answer(json!([stop(0, "ok")]));
        answer["usage"] = json!({
            "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
            "prompt_tokens_details": {"cached_tokens": 4},
        });
        // From the stream's usage chunk, or from the argument.
        round_trip(Endpoint::Chat, &answer, true, None);
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            cached_tokens: 4,
        };
        round_trip(Endpoint::Chat, &answer, false, Some(usage));
        // The argument wins over the stream's.
        let frames = replay(Endpoint::Chat, answer.to_string().as_bytes(), true).expect("replay");
        let other = Usage {
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_tokens: 0,
        };
        let recorded = record(Endpoint::Chat, &frames, Some(other)).expect("recorded");
        let expected = json!({"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3});
        assert_eq!(recorded["usage"], expected);
        // No usage anywhere: no key.
        answer.as_object_mut().expect("object").remove("usage");
        round_trip(Endpoint::Chat, &answer, false, None);
        round_trip(Endpoint::Chat, &answer, true, None);
    }

    #[test]
    fn round_trip_long_unicode_on_char_boundaries() {
        let content = "héllo wörld — ünïcødé 🦀🦀 日本語のテキスト ".repeat(8);
        let answer = chat_answer(json!([stop(0, &content)]));
        round_trip(Endpoint::Chat, &answer, true, None);
        let frames = replay(Endpoint::Chat, answer.to_string().as_bytes(), false).expect("replay");
        let pieces: Vec<String> = frames
            .iter()
            .filter_map(|f| {
                let chunk: Value = serde_json::from_str(&events(f)[0]).ok()?;
                chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .filter(|p| !p.is_empty())
            .collect();
        assert!(pieces.len() > 1, "several content chunks");
        assert!(pieces.iter().all(|p| p.chars().count() <= PIECE_CHARS));
        assert_eq!(pieces.concat(), content);
    }

    #[test]
    fn records_hand_written_openai_stream() {
        let head = r#""id":"chatcmpl-9","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-2024-05-13","system_fingerprint":"fp_a","#;
        let chunk = |choices: &str, usage: &str| {
            format!("data: {{{head}\"choices\":[{choices}],\"usage\":{usage}}}\n\n")
        };
        let delta = |d: &str, finish: &str| {
            format!(r#"{{"index":0,"delta":{d},"logprobs":null,"finish_reason":{finish}}}"#)
        };
        let frames: Vec<Bytes> = vec![
            (chunk(
                &delta(
                    r#"{"role":"assistant","content":"","refusal":null}"#,
                    "null",
                ),
                "null",
            ) + &chunk(&delta(r#"{"content":"Hel"}"#, "null"), "null"))
                .into(),
            (chunk(&delta(r#"{"content":"lo, \"wörld\"!"}"#, "null"), "null")
                + ": keep-alive\n\n"
                + &chunk(&delta("{}", r#""stop""#), "null"))
                .into(),
            (chunk(
                "",
                r#"{"prompt_tokens":8,"completion_tokens":4,"total_tokens":12}"#,
            ) + "data: [DONE]\n\n")
                .into(),
        ];
        let expected = json!({
            "id": "chatcmpl-9", "object": "chat.completion", "created": 1_718_000_000,
            "model": "gpt-4o-2024-05-13", "system_fingerprint": "fp_a",
            "choices": [{"index": 0,
                "message": {"role": "assistant", "content": "Hello, \"wörld\"!"},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
        });
        assert_eq!(record(Endpoint::Chat, &frames, None), Some(expected));
    }

    #[test]
    fn records_hand_written_tool_call_stream() {
        let c = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":"#;
        let frame = [
            r#"[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"f","arguments":""}}]},"finish_reason":null}]}"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]},"finish_reason":null}]}"#,
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":null}]}"#,
            r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ]
        .iter()
        .map(|e| format!("{c}{e}\n\n"))
        .collect::<String>()
            + "data: [DONE]\n\n";
        let got = record(Endpoint::Chat, &[frame.into()], None).expect("recorded");
        let expected = json!([{"index": 0,
            "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}},
            ]},
            "logprobs": null, "finish_reason": "tool_calls"}]);
        assert_eq!(got["choices"], expected);
        assert!(got.get("usage").is_none());
    }

    fn replayed() -> Vec<Bytes> {
        let answer = chat_answer(json!([stop(0, "fine")]));
        replay(Endpoint::Chat, answer.to_string().as_bytes(), false).expect("replay")
    }

    #[test]
    fn poisoned_without_done() {
        let mut frames = replayed();
        frames.pop();
        assert_eq!(record(Endpoint::Chat, &frames, None), None);
    }

    #[test]
    fn poisoned_by_error_event() {
        let mut frames = replayed();
        let error =
            r#"data: {"error":{"message":"boom","type":"server_error","param":null,"code":null}}"#;
        frames.insert(2, format!("{error}\n\n").into());
        assert_eq!(record(Endpoint::Chat, &frames, None), None);
    }

    #[test]
    fn poisoned_past_max_bytes() {
        let frames = replayed();
        let total: usize = frames.iter().map(Bytes::len).sum();
        let run = |max| {
            let mut r = Recorder::new(Endpoint::Chat, max);
            frames.iter().for_each(|f| r.feed(f));
            r.finish(None)
        };
        assert!(run(total).is_some());
        assert!(run(total - 1).is_none());
    }

    #[test]
    fn poisoned_by_garbage() {
        for garbage in [
            &b"data: {not json\n\n"[..],
            b"data: 42\n\n",
            b"data: \xff\xfe\n\n",
        ] {
            let mut frames = replayed();
            frames.insert(1, Bytes::copy_from_slice(garbage));
            assert_eq!(record(Endpoint::Chat, &frames, None), None);
        }
        let bad_delta = r#"data: {"choices":[{"index":0,"delta":{"content":7}}]}"#;
        let mut frames = replayed();
        frames.insert(1, format!("{bad_delta}\n\n").into());
        assert_eq!(record(Endpoint::Chat, &frames, None), None);
        // Events after [DONE] and a stream with no choice at all.
        let mut frames = replayed();
        frames.push(frames[0].clone());
        assert_eq!(record(Endpoint::Chat, &frames, None), None);
        assert_eq!(
            record(Endpoint::Chat, &[Bytes::from_static(DONE)], None),
            None
        );
    }

    #[test]
    fn replay_frames_are_single_events_ending_with_done() {
        let mut answer = chat_answer(json!([stop(0, &"a".repeat(200)), stop(1, "b")]));
        answer["choices"][1]["message"]["tool_calls"] =
            json!([{"id": "t", "type": "function", "function": {"name": "n", "arguments": "{}"}}]);
        for include_usage in [false, true] {
            let frames = replay(Endpoint::Chat, answer.to_string().as_bytes(), include_usage)
                .expect("replay");
            let (done, chunks) = frames.split_last().expect("frames");
            assert_eq!(&done[..], DONE);
            for frame in chunks {
                let events = events(frame);
                assert_eq!(events.len(), 1);
                let chunk: Value = serde_json::from_str(&events[0]).expect("JSON chunk");
                assert_eq!(chunk["object"], "chat.completion.chunk");
                assert_eq!(chunk["id"], "chatcmpl-abc");
                assert_eq!(chunk.get("usage").is_some(), include_usage);
            }
            let last: Value =
                serde_json::from_str(&events(&chunks[chunks.len() - 1])[0]).expect("JSON chunk");
            if include_usage {
                assert_eq!(last["choices"], json!([]));
                assert_eq!(last["usage"], answer["usage"]);
            } else {
                assert_eq!(last["choices"][0]["finish_reason"], "stop");
                assert_eq!(last["choices"][0]["index"], 1);
            }
        }
    }

    #[test]
    fn replay_rejects_what_is_no_answer() {
        for answer in [
            &b"nope"[..],
            b"[]",
            b"{}",
            br#"{"choices":{}}"#,
            br#"{"choices":[1]}"#,
        ] {
            assert_eq!(replay(Endpoint::Chat, answer, true), None);
        }
        let embedding = br#"{"object":"list","data":[],"choices":[]}"#;
        assert_eq!(replay(Endpoint::Embeddings, embedding, true), None);
        let mut r = Recorder::new(Endpoint::Embeddings, 1 << 20);
        r.feed(DONE);
        assert_eq!(r.finish(None), None);
    }
}
