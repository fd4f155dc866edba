//! An `application/vnd.amazon.eventstream` frame encoder, written from the format's
//! description (prelude, string headers, payload, two CRC-32s) with no AWS crate, so that the
//! decoder llmux uses is never the only judge of the frames it reads.

/// One frame with string-valued headers (type 7), in the order given.
pub fn frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hdrs = Vec::with_capacity(64);
    for (name, value) in headers {
        hdrs.push(name.len() as u8);
        hdrs.extend_from_slice(name.as_bytes());
        hdrs.push(7);
        hdrs.extend_from_slice(&(value.len() as u16).to_be_bytes());
        hdrs.extend_from_slice(value.as_bytes());
    }
    let total = 12 + hdrs.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&(total as u32).to_be_bytes());
    out.extend_from_slice(&(hdrs.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hdrs);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A `:message-type: event` frame with a JSON payload.
pub fn event(event_type: &str, payload: &[u8]) -> Vec<u8> {
    frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload,
    )
}

/// A `:message-type: exception` frame (`:exception-type` camelCase, as Bedrock sends them).
pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
    let payload = serde_json::json!({ "message": message }).to_string();
    frame(
        &[
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        payload.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `messageStop` frame of wire-formats-2 §4 (botocore-decoded).
    #[test]
    fn encodes_the_documented_frame() {
        let hex = "0000007a00000051ca2c4665\
            0b3a6576656e742d747970650700 0b6d65737361676553746f70\
            0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e\
            0d3a6d6573736167652d74797065070005 6576656e74\
            7b2273746f70526561736f6e223a22656e645f7475726e227d5fbf09fc";
        let want: Vec<u8> = {
            let h: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
            (0..h.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
                .collect()
        };
        assert_eq!(event("messageStop", br#"{"stopReason":"end_turn"}"#), want);
    }
}
