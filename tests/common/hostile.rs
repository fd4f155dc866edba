//! A hostile upstream: a loopback HTTP/1.1 server answering by hand-written bytes, so it can
//! misbehave below what an HTTP library allows (resets, endless lines, lying lengths).
//!
//! The request path picks the fault: everything before the first `/v1/` is the fault spec, so
//! `base_url("hint/retry-after/1e20")` = `http://127.0.0.1:PORT/hint/retry-after/1e20/v1` works
//! as an OpenAI `base_url` (and `root_url` as an Anthropic one). Faults:
//!
//! | spec | answer |
//! |---|---|
//! | `ok` | 200 with a valid chat completion |
//! | `hint/NAME/VALUE[/NAME/VALUE…]` | 429 with those headers (values percent-decoded) |
//! | `status/CODE` | CODE with an OpenAI error body |
//! | `redirect/CODE` | CODE with `Location` pointing at the sink listener |
//! | `redirect-nolocation/CODE` | CODE without `Location` |
//! | `huge/cl/BYTES`, `huge/chunked/BYTES` | 200 JSON of BYTES, written 64 KiB at a time until the client goes away |
//! | `garbage/empty-object`, `…/array`, `…/not-json`, `…/truncated`, `…/error` | 200 with that body |
//! | `reset` | reads the request, then RST |
//! | `close` | reads the request, then closes without a byte |
//! | `drip/MS` | a valid chat completion, one byte every MS ms |
//! | `hang` | reads the request, never answers |
//! | `sse-drop` | 200 SSE, one content chunk, then closes without `[DONE]` |
//! | `sse-error/CODE` | 200 SSE whose first event is an error with `code` CODE |
//! | `sse-endless/BYTES` | 200 SSE, then one line of BYTES without newline (until the client goes away) |
//!
//! The sink (another listener, i.e. another origin) answers a valid chat completion to
//! anything and records what reached it: a followed redirect shows up there.
//!
//! Every request is counted per fault spec with its method and headers. The server runs on its
//! own thread and runtime, so it serves sync and async tests alike.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub fault: String,
    pub method: String,
    pub path: String,
    /// Lowercased names, in arrival order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    sink: Vec<Seen>,
    /// Body bytes written per fault spec (huge, sse-endless, drip).
    written: HashMap<String, u64>,
}

pub struct Hostile {
    pub addr: SocketAddr,
    /// The other listener redirects point to.
    pub sink: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const CHAT_OK: &str = r#"{"id":"chatcmpl-hostile","object":"chat.completion","created":1,"model":"hostile-model","choices":[{"index":0,"message":{"role":"assistant","content":"hello from upstream"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;

impl Hostile {
    pub fn start() -> Hostile {
        let main = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        main.set_nonblocking(true).unwrap();
        sink.set_nonblocking(true).unwrap();
        let (addr, sink_addr) = (main.local_addr().unwrap(), sink.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let main = TcpListener::from_std(main).unwrap();
                let sink = TcpListener::from_std(sink).unwrap();
                let serve = async {
                    loop {
                        tokio::select! {
                            Ok((c, _)) = main.accept() => {
                                tokio::spawn(serve_fault(c, st.clone(), sink_addr));
                            }
                            Ok((c, _)) = sink.accept() => {
                                tokio::spawn(serve_sink(c, st.clone()));
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = serve => {}
                    _ = stopped => {}
                }
            });
            // Dropping the runtime cancels every connection task (hang, drip…).
        });
        Hostile {
            addr,
            sink: sink_addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// An OpenAI-style `base_url` (ends in `/v1`) for `fault`.
    pub fn base_url(&self, fault: &str) -> String {
        format!("http://{}/{fault}/v1", self.addr)
    }

    /// An Anthropic-style `base_url` (llmux appends `/v1/messages`) for `fault`.
    pub fn root_url(&self, fault: &str) -> String {
        format!("http://{}/{fault}", self.addr)
    }

    /// Requests received for `fault`.
    pub fn seen(&self, fault: &str) -> Vec<Seen> {
        let st = self.state.lock().unwrap();
        st.seen
            .iter()
            .filter(|s| s.fault == fault)
            .cloned()
            .collect()
    }

    pub fn hits(&self, fault: &str) -> usize {
        self.seen(fault).len()
    }

    /// Requests that reached the sink (i.e. followed a redirect).
    pub fn sink_seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().sink.clone()
    }

    /// Body bytes the server managed to write for `fault`.
    pub fn written(&self, fault: &str) -> u64 {
        let st = self.state.lock().unwrap();
        st.written.get(fault).copied().unwrap_or(0)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (head and Content-Length body); `None` if the peer closed first.
async fn read_request(c: &mut TcpStream) -> Option<(String, String, Vec<(String, String)>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
        let n = c.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut have = buf.len() - (head_end + 4);
    while have < len {
        let n = c.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        have += n;
    }
    Some((method, path, headers))
}

fn fault_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    // `/v1beta/`: Gemini's API root.
    match path.find("/v1/").or_else(|| path.find("/v1beta/")) {
        Some(i) => path[1.min(i)..i].to_owned(),
        None => String::new(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn head(status: u16, headers: &[(&str, String)]) -> Vec<u8> {
    let mut h = format!("HTTP/1.1 {status} Hostile\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("connection: close\r\n\r\n");
    h.into_bytes()
}

fn full(status: u16, mut headers: Vec<(&str, String)>, body: &[u8]) -> Vec<u8> {
    headers.push(("content-length", body.len().to_string()));
    let mut out = head(status, &headers);
    out.extend_from_slice(body);
    out
}

fn json_response(status: u16, body: &str) -> Vec<u8> {
    full(
        status,
        vec![("content-type", "application/json".into())],
        body.as_bytes(),
    )
}

async fn serve_sink(mut c: TcpStream, state: Arc<Mutex<State>>) {
    let Some((method, path, headers)) = read_request(&mut c).await else {
        return;
    };
    state.lock().unwrap().sink.push(Seen {
        fault: "sink".into(),
        method,
        path,
        headers,
    });
    let _ = c.write_all(&json_response(200, CHAT_OK)).await;
}

async fn serve_fault(mut c: TcpStream, state: Arc<Mutex<State>>, sink: SocketAddr) {
    let Some((method, path, headers)) = read_request(&mut c).await else {
        return;
    };
    let fault = fault_of(&path);
    state.lock().unwrap().seen.push(Seen {
        fault: fault.clone(),
        method,
        path,
        headers,
    });
    let parts: Vec<&str> = fault.split('/').collect();
    let count = |n: u64| {
        *state
            .lock()
            .unwrap()
            .written
            .entry(fault.clone())
            .or_default() += n
    };
    match parts.as_slice() {
        ["ok"] => {
            let _ = c.write_all(&json_response(200, CHAT_OK)).await;
        }
        ["hint", pairs @ ..] => {
            let mut hs = vec![("content-type", "application/json".to_owned())];
            for kv in pairs.chunks(2) {
                if let [k, v] = kv {
                    hs.push((*k, percent_decode(v)));
                }
            }
            let body = r#"{"error":{"message":"Rate limit reached","type":"rate_limit_error","param":null,"code":"rate_limit_exceeded"}}"#;
            let _ = c.write_all(&full(429, hs, body.as_bytes())).await;
        }
        ["status", code] => {
            let code: u16 = code.parse().unwrap_or(500);
            let body = format!(
                r#"{{"error":{{"message":"hostile status {code}","type":"server_error","param":null,"code":null}}}}"#
            );
            let _ = c.write_all(&json_response(code, &body)).await;
        }
        ["redirect", code] => {
            let code: u16 = code.parse().unwrap_or(307);
            let location = format!("http://{sink}/v1/chat/completions?sig=secret-signature");
            let _ = c
                .write_all(&full(code, vec![("location", location)], b""))
                .await;
        }
        ["redirect-nolocation", code] => {
            let code: u16 = code.parse().unwrap_or(302);
            let _ = c.write_all(&full(code, vec![], b"")).await;
        }
        ["huge", how, bytes] => {
            let total: u64 = bytes.parse().unwrap_or(300_000_000);
            let chunked = *how == "chunked";
            let mut hs = vec![("content-type", "application/json".to_owned())];
            if chunked {
                hs.push(("transfer-encoding", "chunked".into()));
            } else {
                hs.push(("content-length", total.to_string()));
            }
            if c.write_all(&head(200, &hs)).await.is_err() {
                return;
            }
            let block = vec![b'a'; 64 * 1024];
            let mut sent = 0u64;
            while sent < total {
                let n = (total - sent).min(block.len() as u64) as usize;
                let ok = if chunked {
                    let mut frame = format!("{n:x}\r\n").into_bytes();
                    frame.extend_from_slice(&block[..n]);
                    frame.extend_from_slice(b"\r\n");
                    c.write_all(&frame).await.is_ok()
                } else {
                    c.write_all(&block[..n]).await.is_ok()
                };
                if !ok {
                    return;
                }
                sent += n as u64;
                count(n as u64);
            }
            if chunked {
                let _ = c.write_all(b"0\r\n\r\n").await;
            }
        }
        ["garbage", what] => {
            let body = match *what {
                "empty-object" => "{}",
                "array" => "[]",
                "not-json" => "this is not json",
                "truncated" => r#"{"id":"x","choices":[{"index":0,"message":{"role":"assis"#,
                "error" => r#"{"error":{"message":"oops","type":"server_error"}}"#,
                _ => "",
            };
            let _ = c.write_all(&json_response(200, body)).await;
        }
        ["reset"] => {
            let _ = c.set_zero_linger();
            drop(c);
        }
        ["close"] => {
            let _ = c.shutdown().await;
        }
        ["drip", ms] => {
            let every = Duration::from_millis(ms.parse().unwrap_or(100));
            let all = json_response(200, CHAT_OK);
            for b in all {
                if c.write_all(&[b]).await.is_err() {
                    return;
                }
                count(1);
                tokio::time::sleep(every).await;
            }
        }
        ["hang"] => {
            // Until the client gives up.
            let mut sink = [0u8; 1024];
            while matches!(c.read(&mut sink).await, Ok(n) if n > 0) {}
        }
        ["sse-drop"] => {
            let hs = vec![("content-type", "text/event-stream".to_owned())];
            let chunk = r#"data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"partial"},"finish_reason":null}]}"#;
            let mut out = head(200, &hs);
            out.extend_from_slice(chunk.as_bytes());
            out.extend_from_slice(b"\n\n");
            let _ = c.write_all(&out).await;
            let _ = c.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ["sse-error", code] => {
            let hs = vec![("content-type", "text/event-stream".to_owned())];
            let mut out = head(200, &hs);
            out.extend_from_slice(
                format!(
                    "data: {{\"error\":{{\"message\":\"in-stream error\",\"type\":\"rate_limit_error\",\"code\":{code}}}}}\n\n"
                )
                .as_bytes(),
            );
            let _ = c.write_all(&out).await;
        }
        ["sse-endless", bytes] => {
            let total: u64 = bytes.parse().unwrap_or(300_000_000);
            let hs = vec![("content-type", "text/event-stream".to_owned())];
            let mut out = head(200, &hs);
            out.extend_from_slice(b"data: {\"x\":\"");
            if c.write_all(&out).await.is_err() {
                return;
            }
            let block = vec![b'a'; 64 * 1024];
            let mut sent = 0u64;
            while sent < total {
                let n = (total - sent).min(block.len() as u64) as usize;
                if c.write_all(&block[..n]).await.is_err() {
                    return;
                }
                sent += n as u64;
                count(n as u64);
            }
        }
        _ => {
            let _ = c
                .write_all(&json_response(
                    404,
                    r#"{"error":{"message":"unknown hostile fault","type":"invalid_request_error"}}"#,
                ))
                .await;
        }
    }
}
