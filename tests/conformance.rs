//! Provider conformance: one list of cases, run against every provider kind through a real llmux
//! process whose only virtual key is of that kind, in front of the mock provider (which speaks
//! each wire format) or, for bodies no real provider library would send, the hostile upstream.
//! Every case asserts the OpenAI-shaped result the client sees.
//!
//! Adding a provider = its module in `src/providers/` + one line in the `conformance_tests!`
//! invocation at the bottom. A case a provider legitimately cannot serve is declared there with
//! the reason; for it the generated test asserts that llmux refuses it cleanly (an
//! OpenAI-shaped 4xx, nothing sent upstream) instead of running it.

mod common;
#[expect(dead_code, reason = "a fixture with more knobs than these tests turn")]
#[path = "common/hostile.rs"]
mod hostile;

use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use hostile::Hostile;
use serde_json::{json, Value};

/// The provider kinds under test, as the config names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenAi,
    OpenAiCompatible,
    Azure,
    Anthropic,
    Gemini,
    Bedrock,
    /// Vertex AI with a Gemini model, and with a Claude model (`override_params.model`).
    Vertex,
    VertexClaude,
}

const ACCOUNT: &str = "acct";
/// The target's time to answer (or to a stream's first content): the timeout case waits it out.
const REQUEST_TIMEOUT_MS: u64 = 1_000;
/// Caps a provider's Retry-After hint; the mock hints 30 s.
const MAX_RETRY_AFTER_MS: u64 = 2_000;

impl Kind {
    /// The `[virtual_keys.vk]` table for an upstream at `root` (scheme, host, port and any path
    /// prefix; no `/v1`). Vertex's OAuth token endpoint is the mock's at `token_root`.
    fn virtual_key(self, root: &str, token_root: &str) -> String {
        let vertex;
        let (provider, base, extra) = match self {
            Kind::OpenAi => ("openai", format!("{root}/v1"), ""),
            Kind::OpenAiCompatible => ("openai-compatible", format!("{root}/v1"), ""),
            Kind::Azure => (
                "azure-openai",
                root.to_owned(),
                "deployment = \"gpt-4o\"\napi_version = \"2024-02-01\"\n",
            ),
            Kind::Anthropic => ("anthropic", root.to_owned(), ""),
            Kind::Gemini => ("gemini", root.to_owned(), ""),
            Kind::Bedrock => (
                "bedrock",
                root.to_owned(),
                "region = \"us-east-1\"\naccess_key_id_env = \"CONFORMANCE_AWS_ID\"\n\
                 secret_access_key_env = \"CONFORMANCE_AWS_SECRET\"\n",
            ),
            Kind::Vertex | Kind::VertexClaude => {
                vertex = vertex_credentials(token_root);
                ("vertex", root.to_owned(), vertex.as_str())
            }
        };
        // Bedrock signs with SigV4 keys from the environment (`Kind::env`), Vertex with its
        // service account: neither has an api_key.
        let (key, model) = match self {
            Kind::Bedrock => ("", ""),
            Kind::Vertex => ("", ", override_params = { model = \"gemini-2.5-flash\" }"),
            Kind::VertexClaude => (
                "",
                ", override_params = { model = \"claude-sonnet-4@20250514\" }",
            ),
            _ => ("api_key = \"sk-conformance-key\"\n", ""),
        };
        format!(
            "[virtual_keys.vk]\nprovider = \"{provider}\"\nbase_url = \"{base}\"\n{key}\
             max_retry_after_ms = {MAX_RETRY_AFTER_MS}\nfailure_threshold = 1000\n{extra}\n\
             [configs.main]\nstrategy = {{ mode = \"single\" }}\n\
             targets = [ {{ virtual_key = \"vk\", request_timeout = {REQUEST_TIMEOUT_MS}{model} }} ]\n"
        )
    }

    /// The environment llmux needs for this kind's virtual key.
    fn env(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Kind::Bedrock => &[
                (
                    "CONFORMANCE_AWS_ID",
                    llmux_mock::bedrock_keys::ACCESS_KEY_ID,
                ),
                (
                    "CONFORMANCE_AWS_SECRET",
                    llmux_mock::bedrock_keys::SECRET_ACCESS_KEY,
                ),
            ],
            _ => &[],
        }
    }

    /// What names a PNG in the upstream body: a MIME type, or Bedrock's `format`.
    fn png_marker(self) -> &'static str {
        match self {
            Kind::Bedrock => "\"format\":\"png\"",
            _ => "image/png",
        }
    }

    /// The hostile upstream's URL root for `fault` (its fault is the path before `/v1/`).
    fn hostile_root(self, h: &Hostile, fault: &str) -> String {
        match self {
            // Azure appends `/openai/deployments/…`, Bedrock `/model/…`, so the `/v1` goes
            // into the root.
            Kind::Azure | Kind::Bedrock => h.base_url(fault),
            _ => h.root_url(fault),
        }
    }
}

/// Vertex's settings: the test service account (`tests/fixtures/vertex-sa.json`) with its
/// `token_uri` at the mock, written to a file per token endpoint.
fn vertex_credentials(token_root: &str) -> String {
    let mut sa: Value =
        serde_json::from_str(include_str!("fixtures/vertex-sa.json")).expect("fixture");
    sa["token_uri"] = format!("{token_root}/token").into();
    let name: String = token_root
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let file = std::env::temp_dir().join(format!("llmux-conformance-vertex-{name}.json"));
    std::fs::write(&file, sa.to_string()).expect("write the key file");
    format!(
        "project = \"proj\"\nlocation = \"us-east5\"\ncredentials_file = \"{}\"\n",
        file.display()
    )
}

/// One provider's llmux in front of the mock.
struct Setup {
    kind: Kind,
    mock: MockServer,
    llmux: Llmux,
    client: reqwest::Client,
}

impl Setup {
    fn start(kind: Kind) -> Setup {
        let mock = mock();
        let llmux = Llmux::start_with(
            &kind.virtual_key(&mock.url(ACCOUNT), &mock.url(ACCOUNT)),
            "default_config = \"main\"",
            kind.env(),
        );
        Setup {
            kind,
            mock,
            llmux,
            client: client(),
        }
    }

    fn behave(&self, b: Behavior) {
        self.mock.set_behavior(ACCOUNT, b);
    }

    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.llmux.url(path))
            .json(body)
            .send()
            .await
            .expect("llmux answers")
    }

    async fn chat(&self, body: &Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self.post("/v1/chat/completions", body).await;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        (status, headers, v)
    }

    /// What the upstream last received, as JSON text.
    fn upstream_body(&self) -> String {
        self.mock
            .stats(ACCOUNT)
            .last_body
            .map(|v| v.to_string())
            .unwrap_or_default()
    }

    /// A chat that must succeed: returns the `chat.completion` after checking its shape.
    async fn chat_ok(&self, body: &Value) -> Value {
        let (status, _, v) = self.chat(body).await;
        assert_eq!(status, 200, "{:?}: {v}", self.kind);
        assert_completion(&v);
        v
    }

    /// A chat that must fail with `want`: returns the error object after checking its shape.
    async fn chat_err(&self, want: u16) -> (reqwest::header::HeaderMap, Value) {
        let (status, headers, v) = self.chat(&chat_body("gpt-4o")).await;
        assert_eq!(status, want, "{:?}: {v}", self.kind);
        assert_openai_error(&v);
        assert!(
            !v.to_string().contains("sk-conformance-key"),
            "the key leaked: {v}"
        );
        (headers, v)
    }
}

fn assert_completion(v: &Value) {
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["id"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(v["model"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0, "{v}");
    assert_eq!(choice["message"]["role"], "assistant", "{v}");
    assert!(
        choice["message"]["content"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{v}"
    );
    assert!(choice["finish_reason"].as_str().is_some(), "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(
        v["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
}

fn assert_openai_error(v: &Value) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e["type"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
}

/// An SSE body's `data:` payloads, frame by frame, to the end.
async fn sse_datas(resp: reqwest::Response) -> Vec<String> {
    let mut buf = String::new();
    let mut datas = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.expect("stream reads")));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(d) = line.strip_prefix("data: ") {
                    datas.push(d.to_owned());
                }
            }
        }
    }
    assert!(buf.trim().is_empty(), "unterminated frame: {buf:?}");
    datas
}

/// The cases. Each takes a fresh setup (its own mock and llmux) for one provider.
mod cases {
    use super::*;

    pub async fn plain_chat(s: Setup) {
        let v = s.chat_ok(&chat_body("gpt-4o")).await;
        assert!(s.upstream_body().contains("Say hi"));
        assert_eq!(v["choices"][0]["finish_reason"], "stop", "{v}");
    }

    pub async fn system_prompt(s: Setup) {
        s.chat_ok(&json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "You are a terse pirate."},
            {"role": "user", "content": "Say hi"},
        ]}))
        .await;
        assert!(
            s.upstream_body().contains("You are a terse pirate."),
            "{}",
            s.upstream_body()
        );
    }

    pub async fn tools_round_trip(s: Setup) {
        let tools = json!([{"type": "function", "function": {
            "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        }}]);
        s.chat_ok(&json!({"model": "gpt-4o", "tools": tools, "tool_choice": "auto", "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc123", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
            {"role": "tool", "tool_call_id": "call_abc123", "content": "18C and sunny"},
        ]}))
        .await;
        let up = s.upstream_body();
        for part in ["get_weather", "call_abc123", "18C and sunny", "Paris"] {
            assert!(up.contains(part), "{part} not sent upstream: {up}");
        }
    }

    pub async fn image_input(s: Setup) {
        let data = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
        s.chat_ok(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
        ]}]}))
        .await;
        let up = s.upstream_body();
        assert!(up.contains(data), "image not sent upstream: {up}");
        assert!(up.contains(s.kind.png_marker()), "{up}");
    }

    pub async fn stream_with_usage(s: Setup) {
        s.behave(Behavior {
            stream_chunks: 4,
            ..Default::default()
        });
        let r = s
            .post(
                "/v1/chat/completions",
                &json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true},
                    "messages": [{"role": "user", "content": "count to four"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert!(header(r.headers(), "content-type").starts_with("text/event-stream"));
        let datas = sse_datas(r).await;
        assert_eq!(
            datas.last().map(String::as_str),
            Some("[DONE]"),
            "{datas:?}"
        );
        let chunks: Vec<Value> = datas[..datas.len() - 1]
            .iter()
            .map(|d| serde_json::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            // Azure's content-filter preamble (no id, no object, no choices) passes through as
            // Azure sends it; OpenAI SDKs skip it.
            .filter(|c| c.get("prompt_filter_results").is_none() || c["choices"] != json!([]))
            .collect();
        let mut text = String::new();
        let mut finish = None;
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk", "{c}");
            assert!(c["id"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
            for choice in c["choices"].as_array().expect("choices array") {
                text += choice["delta"]["content"].as_str().unwrap_or("");
                if let Some(f) = choice["finish_reason"].as_str() {
                    finish = Some(f.to_owned());
                }
            }
        }
        assert!(!text.is_empty(), "{datas:?}");
        assert_eq!(finish.as_deref(), Some("stop"), "{datas:?}");
        // The usage chunk comes last, with no choices, as OpenAI sends it.
        let last = chunks.last().expect("a usage chunk");
        assert_eq!(last["choices"], json!([]), "{last}");
        assert!(
            last["usage"]["prompt_tokens"].as_u64().unwrap_or(0) > 0,
            "{last}"
        );
        assert!(
            last["usage"]["completion_tokens"].as_u64().unwrap_or(0) > 0,
            "{last}"
        );
        assert!(
            chunks[..chunks.len() - 1]
                .iter()
                .all(|c| c["usage"].is_null()),
            "{datas:?}"
        );
    }

    /// The error type is the provider's own (OpenAI says `invalid_request_error` for a bad key,
    /// `requests` for a rate limit), so only the status and the envelope are common ground.
    async fn status(s: Setup, upstream: u16, want: u16) {
        s.behave(Behavior {
            always_status: Some(upstream),
            ..Default::default()
        });
        s.chat_err(want).await;
    }

    pub async fn status_400(s: Setup) {
        status(s, 400, 400).await
    }

    pub async fn status_401(s: Setup) {
        status(s, 401, 401).await
    }

    pub async fn status_404(s: Setup) {
        status(s, 404, 404).await
    }

    pub async fn status_408(s: Setup) {
        status(s, 408, 408).await
    }

    pub async fn status_413(s: Setup) {
        status(s, 413, 413).await
    }

    pub async fn status_500(s: Setup) {
        status(s, 500, 500).await
    }

    pub async fn status_503(s: Setup) {
        status(s, 503, 503).await
    }

    pub async fn rate_limited_with_retry_after(s: Setup) {
        s.behave(Behavior {
            always_status: Some(429),
            retry_after_s: Some(30),
            ..Default::default()
        });
        let (headers, _) = s.chat_err(429).await;
        // The provider's 30 s, capped by the target's max_retry_after_ms.
        assert_eq!(
            header(&headers, "retry-after"),
            (MAX_RETRY_AFTER_MS / 1000).to_string()
        );
    }

    pub async fn garbage_200(s: Setup) {
        let h = Hostile::start();
        let llmux = Llmux::start_with(
            &s.kind.virtual_key(
                &s.kind.hostile_root(&h, "garbage/not-json"),
                &s.mock.url(ACCOUNT),
            ),
            "default_config = \"main\"",
            s.kind.env(),
        );
        let r = s
            .client
            .post(llmux.url("/v1/chat/completions"))
            .json(&chat_body("gpt-4o"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 502);
        let v: Value = r.json().await.unwrap();
        assert_openai_error(&v);
        assert_eq!(h.hits("garbage/not-json"), 1);
    }

    pub async fn connection_reset(s: Setup) {
        s.behave(Behavior {
            fail_rate: 1.0,
            fail_mode: FailMode::Reset,
            ..Default::default()
        });
        s.chat_err(502).await;
    }

    pub async fn timeout(s: Setup) {
        s.behave(Behavior {
            fail_rate: 1.0,
            fail_mode: FailMode::Timeout,
            ..Default::default()
        });
        let t0 = Instant::now();
        let (_, v) = s.chat_err(408).await;
        assert_eq!(v["error"]["type"], "timeout_error", "{v}");
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(REQUEST_TIMEOUT_MS) && took < Duration::from_secs(5),
            "{took:?}"
        );
    }

    pub async fn client_cancels_stream(s: Setup) {
        s.behave(Behavior {
            stream_chunks: 20,
            chunk_interval_ms: 200,
            ..Default::default()
        });
        let r = s
            .post(
                "/v1/chat/completions",
                &json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "count"}]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let mut body = r.bytes_stream();
        let first = body.next().await.expect("a first frame").expect("reads");
        assert!(first.starts_with(b"data: "), "{first:?}");
        drop(body);
        // The upstream sees its connection closed long before the 4 s the stream would take.
        let t0 = Instant::now();
        while s.mock.stats(ACCOUNT).client_disconnects == 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(2),
                "upstream not cancelled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn embeddings(s: Setup) {
        let r = s
            .post(
                "/v1/embeddings",
                &json!({"model": "text-embedding-3-small", "input": ["a", "b"]}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "list", "{v}");
        assert_eq!(v["data"].as_array().map(Vec::len), Some(2), "{v}");
        assert!(v["data"][0]["embedding"].is_array(), "{v}");
    }

    pub async fn completions(s: Setup) {
        let r = s
            .post(
                "/v1/completions",
                &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "text_completion", "{v}");
        assert!(v["choices"][0]["text"].as_str().is_some(), "{v}");
    }

    /// What a declared exception must still do: refuse cleanly, sending nothing upstream.
    pub async fn refused(s: Setup, case: &str, why: &str) {
        let (path, body) = match case {
            "embeddings" => ("/v1/embeddings", json!({"model": "e", "input": "a"})),
            "completions" => ("/v1/completions", json!({"model": "c", "prompt": "a"})),
            other => panic!("no refusal defined for case {other} ({why})"),
        };
        let r = s.post(path, &body).await;
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!((400..500).contains(&status), "{case}: {status} {v}");
        assert_openai_error(&v);
        assert_eq!(s.mock.stats(ACCOUNT).requests, 0, "{case} went upstream");
    }
}

/// Generates `mod <provider> { #[tokio::test] fn <case>() … }` for every provider and case.
/// `except { case: "reason" }` declares a case the provider cannot serve.
macro_rules! conformance_tests {
    ($($provider:ident => $kind:expr $(, except { $($case:ident: $why:literal),* $(,)? })?;)*) => {
        $(
            mod $provider {
                use super::*;
                const KIND: Kind = $kind;
                const EXCEPT: &[(&str, &str)] = &[$($((stringify!($case), $why)),*)?];
                conformance_tests!(@cases
                    plain_chat, system_prompt, tools_round_trip, image_input, stream_with_usage,
                    status_400, status_401, status_404, status_408, status_413, status_500,
                    status_503, rate_limited_with_retry_after, garbage_200, connection_reset,
                    timeout, client_cancels_stream, embeddings, completions
                );
            }
        )*
    };
    (@cases $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let s = Setup::start(KIND);
                match EXCEPT.iter().find(|(c, _)| *c == stringify!($case)) {
                    Some((case, why)) => cases::refused(s, case, why).await,
                    None => cases::$case(s).await,
                }
            }
        )*
    };
}

conformance_tests! {
    openai => Kind::OpenAi;
    openai_compatible => Kind::OpenAiCompatible;
    azure => Kind::Azure;
    anthropic => Kind::Anthropic, except {
        embeddings: "Anthropic has no embeddings API",
        completions: "Anthropic retired its text completions API; llmux translates chat only",
    };
    gemini => Kind::Gemini, except {
        completions: "Gemini has no text completions API; llmux translates chat and embeddings",
    };
    bedrock => Kind::Bedrock, except {
        embeddings: "Converse is chat only; Bedrock embeddings need per-model InvokeModel bodies",
        completions: "Converse has no text completions; llmux translates chat only",
    };
    vertex => Kind::Vertex, except {
        embeddings: "Vertex embeds with :predict and its own instance shapes, which llmux does not translate",
        completions: "Vertex has no text completions API; llmux translates chat only",
    };
    vertex_claude => Kind::VertexClaude, except {
        embeddings: "Anthropic models have no embeddings",
        completions: "Anthropic on Vertex speaks only the Messages API; llmux translates chat only",
    };
}
