//! Chat Completions answer → Responses `response` object, and the pieces of that object the
//! stream shares.

use serde_json::{json, Map, Value};

use super::{new_id, object};
use crate::providers::AttemptError;

/// What a Responses object repeats that the chat answer does not carry: the router's id and
/// clock, the model, and the Responses request whose settings OpenAI echoes.
#[derive(Debug, Clone)]
pub struct Echo {
    /// `resp_…`, minted by the router.
    pub id: String,
    /// Unix seconds.
    pub created_at: u64,
    pub model: String,
    /// The Responses request as the client sent it (overrides merged), for `instructions`,
    /// `tools`, `tool_choice`, `temperature`, `text`, `metadata`, …
    pub request: Map<String, Value>,
}

/// A non-streamed chat answer → the Responses object OpenAI would have returned. A body that
/// is not a chat answer (no `choices[0]`) is the upstream's fault: a 502 the tree may fall
/// back from.
pub fn from_chat(chat: &Value, ctx: &Echo) -> Result<Value, AttemptError> {
    let Some(choice) = chat
        .get("choices")
        .and_then(|c| c.get(0))
        .filter(|c| c.is_object())
    else {
        return Err(AttemptError::bad_upstream(
            "invalid_upstream_response",
            "upstream returned a body without `choices[0]`: not a chat completion",
        ));
    };
    let empty = Value::Null;
    let message = choice.get("message").unwrap_or(&empty);
    let (status, incomplete) = outcome(choice.get("finish_reason").and_then(Value::as_str));

    let mut output = Vec::new();
    let mut parts = Vec::new();
    let text = content_text(message.get("content"));
    if !text.is_empty() {
        parts.push(text_part(text));
    }
    if let Some(r) = message.get("refusal").and_then(Value::as_str) {
        parts.push(refusal_part(r.to_owned()));
    }
    if !parts.is_empty() {
        output.push(message_item(new_id("msg_"), "completed", parts));
    }
    let calls = message.get("tool_calls").and_then(Value::as_array);
    for call in calls.into_iter().flatten() {
        let Some(f) = call.get("function") else {
            continue; // not a function call: never asked for
        };
        output.push(call_item(
            new_id("fc_"),
            call.get("id").and_then(Value::as_str),
            str_of(f, "name"),
            str_of(f, "arguments"),
            "completed",
        ));
    }
    // The deprecated single function call.
    if let Some(f) = message.get("function_call").filter(|f| f.is_object()) {
        output.push(call_item(
            new_id("fc_"),
            None,
            str_of(f, "name"),
            str_of(f, "arguments"),
            "completed",
        ));
    }
    if status == "incomplete" {
        mark_incomplete(&mut output);
    }
    Ok(envelope(
        ctx,
        status,
        output,
        usage(chat.get("usage")),
        Value::Null,
        incomplete,
    ))
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A chat message's text: a string, or the text of its parts.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// The item cut short by an incomplete answer is the last one.
pub(super) fn mark_incomplete(output: &mut [Value]) {
    if let Some(Value::Object(last)) = output.last_mut() {
        last.insert("status".into(), "incomplete".into());
    }
}

/// Response `status` and `incomplete_details` for a chat `finish_reason`.
pub(super) fn outcome(finish_reason: Option<&str>) -> (&'static str, Value) {
    match finish_reason {
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some("content_filter") => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

pub(super) fn text_part(text: String) -> Value {
    object([
        ("type", "output_text".into()),
        ("text", text.into()),
        ("annotations", Value::Array(Vec::new())),
    ])
}

pub(super) fn refusal_part(refusal: String) -> Value {
    object([("type", "refusal".into()), ("refusal", refusal.into())])
}

pub(super) fn message_item(id: String, status: &str, content: Vec<Value>) -> Value {
    object([
        ("type", "message".into()),
        ("id", id.into()),
        ("status", status.into()),
        ("role", "assistant".into()),
        ("content", Value::Array(content)),
    ])
}

/// A `function_call` item; a call without an id gets a fresh `call_…`.
pub(super) fn call_item(
    id: String,
    call_id: Option<&str>,
    name: String,
    arguments: String,
    status: &str,
) -> Value {
    let call_id = call_id.map_or_else(|| new_id("call_"), str::to_owned);
    object([
        ("type", "function_call".into()),
        ("id", id.into()),
        ("call_id", call_id.into()),
        ("name", name.into()),
        ("arguments", arguments.into()),
        ("status", status.into()),
    ])
}

/// Chat `usage` → Responses `usage` (`null` when the chat answer has none).
pub(super) fn usage(chat: Option<&Value>) -> Value {
    let Some(u) = chat.filter(|u| u.is_object()) else {
        return Value::Null;
    };
    let n = |path: &[&str]| {
        path.iter()
            .try_fold(u, |v, k| v.get(k))
            .and_then(Value::as_u64)
    };
    let input = n(&["prompt_tokens"]).unwrap_or(0);
    let output = n(&["completion_tokens"]).unwrap_or(0);
    json!({
        "input_tokens": input,
        "input_tokens_details": {
            "cached_tokens": n(&["prompt_tokens_details", "cached_tokens"]).unwrap_or(0),
            "cache_write_tokens": n(&["prompt_tokens_details", "cache_write_tokens"]).unwrap_or(0),
        },
        "output_tokens": output,
        "output_tokens_details": {
            "reasoning_tokens": n(&["completion_tokens_details", "reasoning_tokens"]).unwrap_or(0),
        },
        "total_tokens": n(&["total_tokens"]).unwrap_or(input.saturating_add(output)),
    })
}

/// The whole `response` object, echoing the request's settings (OpenAI's defaults where the
/// request has none).
pub(super) fn envelope(
    ctx: &Echo,
    status: &str,
    output: Vec<Value>,
    usage: Value,
    error: Value,
    incomplete_details: Value,
) -> Value {
    let req = &ctx.request;
    let or = |key: &str, default: Value| {
        req.get(key)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    let reasoning = req.get("reasoning");
    let reasoning_of = |key: &str| {
        reasoning
            .and_then(|r| r.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let mut m = Map::new();
    m.insert("id".into(), ctx.id.clone().into());
    m.insert("object".into(), "response".into());
    m.insert("created_at".into(), ctx.created_at.into());
    m.insert("status".into(), status.into());
    m.insert("error".into(), error);
    m.insert("incomplete_details".into(), incomplete_details);
    m.insert("instructions".into(), or("instructions", Value::Null));
    m.insert(
        "max_output_tokens".into(),
        or("max_output_tokens", Value::Null),
    );
    m.insert("model".into(), ctx.model.clone().into());
    m.insert("output".into(), Value::Array(output));
    m.insert(
        "parallel_tool_calls".into(),
        or("parallel_tool_calls", true.into()),
    );
    m.insert(
        "previous_response_id".into(),
        or("previous_response_id", Value::Null),
    );
    m.insert(
        "reasoning".into(),
        json!({"effort": reasoning_of("effort"), "summary": reasoning_of("summary")}),
    );
    m.insert("store".into(), or("store", true.into()));
    m.insert("temperature".into(), or("temperature", 1.0.into()));
    m.insert(
        "text".into(),
        or("text", json!({"format": {"type": "text"}})),
    );
    m.insert("tool_choice".into(), or("tool_choice", "auto".into()));
    m.insert("tools".into(), or("tools", Value::Array(Vec::new())));
    m.insert("top_p".into(), or("top_p", 1.0.into()));
    m.insert("truncation".into(), or("truncation", "disabled".into()));
    m.insert("usage".into(), usage);
    m.insert("user".into(), or("user", Value::Null));
    m.insert("metadata".into(), or("metadata", json!({})));
    Value::Object(m)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::providers::FailureClass;

    /// The wire doc's §4 Responses request.
    pub(crate) fn fixture_echo() -> Echo {
        let req = json!({"model":"gpt-4o-mini","input":"Weather in Paris?","tools":[{"type":"function","name":"wx","parameters":{"type":"object"},"strict":false}]});
        Echo {
            id: "resp_1".into(),
            created_at: 1_735_689_600,
            model: "gpt-4o-mini".into(),
            request: req.as_object().unwrap().clone(),
        }
    }

    /// `v` with every minted id (`msg_…`, `fc_…`) replaced by its prefix.
    pub(crate) fn ids_aside(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v.as_str()) {
                            ("id" | "item_id", Some(s)) => {
                                Value::String(s.split_inclusive('_').next().unwrap().to_owned())
                            }
                            _ => ids_aside(v),
                        };
                        (k.clone(), v)
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(ids_aside).collect()),
            v => v.clone(),
        }
    }

    #[test]
    fn the_wire_doc_fixture_answer_becomes_its_output() {
        let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "wx", "arguments": "{\"city\":\"Paris\"}"}}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48}});
        let r = from_chat(&chat, &fixture_echo()).unwrap();
        let fixture = json!({"id":"resp_1","object":"response","created_at":1735689600,"status":"completed","model":"gpt-4o-mini","tool_choice":"auto","parallel_tool_calls":true,
            "tools":[{"type":"function","name":"wx","parameters":{"type":"object"},"strict":false}],
            "output":[{"type":"function_call","id":"fc_1","call_id":"call_1","name":"wx","arguments":"{\"city\":\"Paris\"}","status":"completed"}],
            "usage":{"input_tokens":40,"input_tokens_details":{"cached_tokens":0,"cache_write_tokens":0},"output_tokens":8,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":48}});
        for (k, v) in fixture.as_object().unwrap() {
            assert_eq!(ids_aside(&r[k]), ids_aside(v), "{k}");
        }
        assert!(r["output"][0]["id"].as_str().unwrap().starts_with("fc_"));
        assert_eq!(r["error"], Value::Null);
        assert_eq!(r["incomplete_details"], Value::Null);
        assert_eq!(r["store"], true);
        assert_eq!(r["text"], json!({"format": {"type": "text"}}));
    }

    #[test]
    fn text_comes_first_then_refusal_then_calls() {
        let chat = json!({"choices": [{"message": {"role": "assistant", "content": "Checking.", "refusal": "no",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                           {"id": "call_2", "type": "function", "function": {"name": "b", "arguments": "{\"x\":1}"}}]},
            "finish_reason": "tool_calls"}]});
        let r = from_chat(&chat, &fixture_echo()).unwrap();
        assert_eq!(
            ids_aside(&r["output"]),
            json!([
                {"type": "message", "id": "msg_", "status": "completed", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Checking.", "annotations": []},
                    {"type": "refusal", "refusal": "no"}]},
                {"type": "function_call", "id": "fc_", "call_id": "call_1", "name": "a", "arguments": "{}", "status": "completed"},
                {"type": "function_call", "id": "fc_", "call_id": "call_2", "name": "b", "arguments": "{\"x\":1}", "status": "completed"},
            ])
        );
        assert_eq!(r["usage"], Value::Null);
    }

    #[test]
    fn finish_reasons_give_status_and_incomplete_details() {
        for (finish, status, details) in [
            ("stop", "completed", Value::Null),
            ("tool_calls", "completed", Value::Null),
            ("function_call", "completed", Value::Null),
            (
                "length",
                "incomplete",
                json!({"reason": "max_output_tokens"}),
            ),
            (
                "content_filter",
                "incomplete",
                json!({"reason": "content_filter"}),
            ),
        ] {
            let chat = json!({"choices": [{"message": {"role": "assistant", "content": "Hi"}, "finish_reason": finish}]});
            let r = from_chat(&chat, &fixture_echo()).unwrap();
            assert_eq!(r["status"], status, "{finish}");
            assert_eq!(r["incomplete_details"], details, "{finish}");
            let item_status = if status == "incomplete" {
                "incomplete"
            } else {
                "completed"
            };
            assert_eq!(r["output"][0]["status"], item_status);
        }
    }

    #[test]
    fn usage_maps_cached_and_reasoning_tokens() {
        let chat = json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 20}}});
        let r = from_chat(&chat, &fixture_echo()).unwrap();
        assert_eq!(
            r["usage"],
            json!({"input_tokens": 100, "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
                "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 130})
        );
        // No total: the sum.
        let u = usage(Some(&json!({"prompt_tokens": 3, "completion_tokens": 4})));
        assert_eq!(u["total_tokens"], 7);
    }

    #[test]
    fn the_request_is_echoed() {
        let mut echo = fixture_echo();
        echo.request = json!({"instructions": "sys", "tool_choice": "required", "parallel_tool_calls": false,
            "temperature": 0.5, "top_p": 0.7, "text": {"format": {"type": "json_object"}}, "max_output_tokens": 9,
            "previous_response_id": "resp_0", "store": false, "metadata": {"k": "v"}, "reasoning": {"effort": "low"}})
        .as_object()
        .unwrap()
        .clone();
        let chat = json!({"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}]});
        let r = from_chat(&chat, &echo).unwrap();
        for key in [
            "instructions",
            "tool_choice",
            "parallel_tool_calls",
            "temperature",
            "top_p",
            "text",
            "max_output_tokens",
            "previous_response_id",
            "store",
            "metadata",
        ] {
            assert_eq!(r[key], echo.request[key], "{key}");
        }
        assert_eq!(r["reasoning"], json!({"effort": "low", "summary": null}));
        assert_eq!(r["tools"], json!([]));
    }

    #[test]
    fn a_body_without_a_choice_is_a_bad_upstream() {
        for body in [
            json!({}),
            json!({"choices": []}),
            json!({"choices": [1]}),
            json!([1]),
        ] {
            let e = from_chat(&body, &fixture_echo()).unwrap_err();
            assert_eq!((e.status, e.class), (502, FailureClass::Server));
        }
    }
}
