//! Translation between the OpenAI Responses API (`POST /v1/responses`, what a client may speak
//! to llmux) and Chat Completions (what a target that only speaks chat understands: an
//! OpenAI-compatible chat server, or Anthropic through llmux's own chat → Messages
//! translation).
//!
//! This module owns every Responses-specific shape that such a target needs, and nothing else:
//! the request (`request.rs`: [`to_chat`], plus [`input_items`] for the router to store a
//! turn's input), the non-streamed answer (`response.rs`: [`from_chat`]) and the stream
//! (`stream.rs`: [`EventStream`], chat chunks in, Responses events out). It is pure: no I/O,
//! no clock, no storage. `previous_response_id` is the router's business: it hands
//! [`to_chat`] the stored items of the earlier turns, and stores what [`input_items`],
//! [`from_chat`] and [`EventStream::output_items`] return. Nothing here panics on client or
//! upstream input; a request that cannot be served through chat (a built-in tool such as
//! `web_search`, an unknown item type) is the client's 400.

mod request;
mod response;
mod stream;

use serde_json::{Map, Value};

use super::{AttemptError, FailureClass};

pub use request::{input_items, to_chat};
pub use response::{from_chat, Echo};
pub use stream::EventStream;

/// A fresh object id: `prefix` (`resp_`, `msg_`, `fc_`, …) and 24 lowercase hex characters.
pub fn new_id(prefix: &str) -> String {
    // 96 random bits.
    format!("{prefix}{:024x}", rand::random::<u128>() >> 32)
}

/// The client's 400 for a request that cannot be translated.
fn invalid(param: impl Into<String>, message: impl Into<String>) -> AttemptError {
    let mut e = AttemptError::new(400, FailureClass::Client, "invalid_request_error", message);
    e.param = Some(param.into());
    e
}

/// Builds a JSON object by moving the given values in.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_24_hex_chars() {
        let a = new_id("resp_");
        let b = new_id("resp_");
        assert_ne!(a, b);
        let hex = a.strip_prefix("resp_").unwrap();
        assert_eq!(hex.len(), 24);
        assert!(hex
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    }
}
