//! `POST /v1/responses` on the data path. A target with its own Responses API gets the
//! request as is (its answer and stream pass through); any other target gets it translated to
//! Chat Completions (`providers::responses`), with the earlier turns of a
//! `previous_response_id` chain replayed from what llmux stored. Either way the response id
//! is remembered with the account that made it ([`crate::conversation`]), so follow-ups and
//! `GET`/`DELETE` reach that account.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::clock::unix_ms;
use crate::config::{Leaf, ResponsesApi};
use crate::conversation::{Conversations, Record, Stored};
use crate::providers::responses::{self, Echo, EventStream};
use crate::providers::{AttemptError, Body, Upstream};

/// What a Responses request brings beyond its body: resolved once, before routing.
pub struct Turn {
    /// The conversation so far when `previous_response_id` names a stored (translated) one.
    pub history: Option<Arc<Vec<Value>>>,
    /// `previous_response_id`, when given.
    pub previous: Option<String>,
    /// `store` (default true).
    pub store: bool,
}

impl Default for Turn {
    fn default() -> Turn {
        Turn {
            history: None,
            previous: None,
            store: true,
        }
    }
}

/// A leaf's `override_params` in Responses terms: trees are usually written with chat names,
/// so `max_tokens` / `max_completion_tokens` become `max_output_tokens`, `reasoning_effort`
/// becomes `reasoning.effort`, and `stream_options` (chat only) is dropped; Responses names
/// pass as they are.
pub fn overrides(params: &Map<String, Value>) -> std::borrow::Cow<'_, Map<String, Value>> {
    const CHAT: [&str; 4] = [
        "max_tokens",
        "max_completion_tokens",
        "reasoning_effort",
        "stream_options",
    ];
    if !CHAT.iter().any(|k| params.contains_key(*k)) {
        return std::borrow::Cow::Borrowed(params);
    }
    let mut out = Map::with_capacity(params.len());
    for (k, v) in params {
        match k.as_str() {
            "max_tokens" | "max_completion_tokens" => {
                out.entry("max_output_tokens").or_insert_with(|| v.clone());
            }
            "reasoning_effort" => {
                let mut r = match params.get("reasoning") {
                    Some(Value::Object(r)) => r.clone(),
                    _ => Map::new(),
                };
                r.insert("effort".into(), v.clone());
                out.insert("reasoning".into(), Value::Object(r));
            }
            "stream_options" => {}
            "reasoning" if params.contains_key("reasoning_effort") => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(v) = params.get("max_output_tokens") {
        out.insert("max_output_tokens".into(), v.clone());
    }
    std::borrow::Cow::Owned(out)
}

/// Whether `spec` gets Responses as is.
pub fn native(spec: &Upstream) -> bool {
    spec.responses_api == ResponsesApi::Native
}

/// A translated request: the chat body to send, and the echo its answer is built from.
pub struct Translated {
    pub chat: Body,
    pub echo: Echo,
    /// This request's items (what `input_items` lists), and the history before them.
    pub input: Vec<Value>,
}

/// Translates the Responses request `body` + the leaf's overrides for a chat-only target.
/// A refusal (a built-in tool, a malformed item) is the client's error, and lets the walk try
/// a target that can serve it.
pub fn translate(
    body: &crate::providers::Body,
    leaf: &Leaf,
    turn: &Turn,
    model: Option<&str>,
) -> Result<Translated, AttemptError> {
    let mut request: Map<String, Value> = body.map()?.clone();
    for (k, v) in overrides(&leaf.override_params).iter() {
        request.insert(k.clone(), v.clone());
    }
    if turn.previous.is_some() && turn.history.is_none() {
        let mut e = AttemptError::new(
            400,
            crate::providers::FailureClass::Client,
            "invalid_request_error",
            format!(
                "Previous response with id '{}' not found.",
                turn.previous.as_deref().unwrap_or_default()
            ),
        );
        e.param = Some("previous_response_id".into());
        e.code = Some("previous_response_not_found".into());
        return Err(e);
    }
    let history: &[Value] = turn.history.as_deref().map_or(&[], Vec::as_slice);
    let chat = responses::to_chat(&request, history)?;
    let input = responses::input_items(&request)?;
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .or(model)
        .unwrap_or_default()
        .to_owned();
    let echo = Echo {
        id: responses::new_id("resp_"),
        created_at: unix_ms() / 1000,
        model,
        request,
    };
    let chat = serde_json::to_vec(&chat).map_err(|e| {
        AttemptError::bad_upstream("invalid_request", format!("could not encode: {e}"))
    })?;
    Ok(Translated {
        chat: Body::new(chat.into()),
        echo,
        input,
    })
}

/// A chat-side error renamed in Responses terms (`response_format` is `text.format` there,
/// `max_completion_tokens` is `max_output_tokens`, `messages[…]` is `input`).
pub fn responses_param(mut e: AttemptError) -> AttemptError {
    let renamed = match e.param.as_deref() {
        Some("response_format") => Some("text.format"),
        Some("max_completion_tokens" | "max_tokens") => Some("max_output_tokens"),
        Some("reasoning_effort") => Some("reasoning.effort"),
        Some(p) if p.starts_with("messages") => Some("input"),
        _ => None,
    };
    if let Some(p) = renamed {
        e.message = e.message.replace(e.param.as_deref().unwrap_or_default(), p);
        e.param = Some(p.into());
    }
    e
}

/// Remembers a native response's id with its account.
pub fn remember_native(conversations: &Conversations, target: &str, body: &[u8]) {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<String>,
    }
    if let Ok(Id { id: Some(id) }) = serde_json::from_slice::<Id>(body) {
        if crate::conversation::valid_id(&id) {
            conversations.put(
                id,
                Record {
                    target: target.to_owned(),
                    stored: None,
                },
            );
        }
    }
}

/// Remembers a translated response and its conversation.
pub fn remember_translated(
    conversations: &Conversations,
    target: &str,
    turn: &Turn,
    input: Vec<Value>,
    response: Value,
) {
    let Some(id) = response
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let stored = Some({
        let mut items: Vec<Value> = turn.history.as_deref().cloned().unwrap_or_default();
        items.extend(input.iter().cloned());
        if let Some(Value::Array(out)) = response.get("output") {
            items.extend(out.iter().cloned());
        }
        Stored {
            response,
            input,
            items,
        }
    });
    conversations.put(
        id,
        Record {
            target: target.to_owned(),
            stored,
        },
    );
}

/// What a stream must remember when it completes.
pub struct StreamDone {
    pub conversations: Arc<Conversations>,
    pub target: String,
    pub turn: Arc<Turn>,
    /// For a translated stream: this request's items.
    pub input: Option<Vec<Value>>,
}

impl StreamDone {
    /// Called once the stream ended with its terminator.
    pub fn complete(self, upstream: &crate::providers::stream::UpstreamStream) {
        match (upstream.translated(), self.input) {
            (Some(events), Some(input)) => remember_translated(
                &self.conversations,
                &self.target,
                &self.turn,
                input,
                events.response(),
            ),
            _ => {
                if let Some(id) = upstream.response_id() {
                    if crate::conversation::valid_id(id) {
                        self.conversations.put(
                            id.to_owned(),
                            Record {
                                target: self.target.clone(),
                                stored: None,
                            },
                        );
                    }
                }
            }
        }
    }
}

/// After a leaf answered a Responses request: a full answer's id is remembered now; a
/// stream's once it completes (returned, for the client stream).
pub fn remember(
    conversations: &Arc<Conversations>,
    spec: &Upstream,
    req: &super::Prepared,
    reply: &super::Reply,
) -> Option<StreamDone> {
    let turn = req.turn.clone().unwrap_or_default();
    // `store: false` keeps nothing, not even the affinity: there is nothing to follow up.
    if !turn.store {
        return None;
    }
    let input = || {
        req.body
            .map()
            .ok()
            .and_then(|m| responses::input_items(m).ok())
            .unwrap_or_default()
    };
    match reply {
        super::Reply::Full(answer) if native(spec) => {
            remember_native(conversations, &spec.name, &answer.body);
            None
        }
        super::Reply::Full(answer) => {
            if let Ok(response) = serde_json::from_slice::<Value>(&answer.body) {
                remember_translated(conversations, &spec.name, &turn, input(), response);
            }
            None
        }
        super::Reply::Stream { .. } => Some(StreamDone {
            conversations: conversations.clone(),
            target: spec.name.clone(),
            input: (!native(spec)).then(input),
            turn,
        }),
        super::Reply::Cached(_) => None,
    }
}

/// The events a translated stream starts with.
pub fn events(echo: Echo) -> EventStream {
    EventStream::new(echo)
}
