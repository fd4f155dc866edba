//! OpenTelemetry export (`[telemetry]`): a real llmux process exports over OTLP/HTTP to a real
//! receiver in this test (a hyper server decoding the collector protocol with the
//! `opentelemetry-proto` types). Asserts the span tree, the GenAI and `llmux.*` attributes,
//! W3C trace context in (from the client) and out (to the provider), content capture being
//! opt-in, and that a collector that is down or hangs costs no request.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

/// A received span with its attributes as strings.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    kind: i32,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    status_code: i32,
    attrs: HashMap<String, String>,
    service: String,
}

impl Got {
    fn attr(&self, k: &str) -> &str {
        self.attrs.get(k).map(String::as_str).unwrap_or("")
    }
}

fn value(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// The OTLP/HTTP receiver: every span of every export, and the paths and content types used.
struct Receiver {
    addr: std::net::SocketAddr,
    spans: Arc<Mutex<Vec<Got>>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (spans.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (s, r) = (s.clone(), r.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (s, r) = (s.clone(), r.clone());
                        async move { receive(req, s, r).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            spans,
            requests,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until `pred` holds for the spans received (the exporter batches every 50 ms).
    async fn wait_for(&self, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let t0 = Instant::now();
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if pred(&spans) {
                return spans;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no {what} within 20 s; received: {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    req: hyper::Request<hyper::body::Incoming>,
    spans: Arc<Mutex<Vec<Got>>>,
    requests: Arc<Mutex<Vec<(String, String)>>>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    let ctype = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    requests.lock().unwrap().push((path, ctype));
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let export = ExportTraceServiceRequest::decode(body).expect("a valid OTLP protobuf export");
    let mut got = spans.lock().unwrap();
    for rs in export.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| value(&a.value))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                got.push(convert(span, &service));
            }
        }
    }
    let out = ExportTraceServiceResponse::default().encode_to_vec();
    Ok(hyper::Response::builder()
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(out)))
        .unwrap())
}

fn convert(s: Span, service: &str) -> Got {
    Got {
        name: s.name,
        kind: s.kind,
        trace_id: s.trace_id,
        span_id: s.span_id,
        parent: s.parent_span_id,
        status_code: s.status.map_or(0, |st| st.code),
        attrs: s
            .attributes
            .iter()
            .map(|a| (a.key.clone(), value(&a.value)))
            .collect(),
        service: service.to_owned(),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";

fn config(m: &MockServer, endpoint: &str, extra: &str) -> String {
    format!(
        r#"{keys}
[configs.main]
strategy = {{ mode = "fallback" }}
targets = [
  {{ virtual_key = "anthropic-main", override_params = {{ model = "claude-3-5-haiku-20241022" }} }},
  {{ virtual_key = "openai-main", override_params = {{ model = "gpt-4o-mini" }} }},
]

[telemetry]
otlp_endpoint = "{endpoint}"
service_name = "llmux-under-test"
batch_delay_ms = 50
export_timeout_ms = 1000
{extra}
"#,
        keys = provider_keys(m),
    )
}

fn request_spans(spans: &[Got]) -> Vec<&Got> {
    spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_carry_genai_attributes_and_w3c_context_both_ways() {
    let rx = Receiver::start().await;
    let m = mock();
    // The first leaf fails over to the second: two attempt spans under one request span.
    m.set_behavior(
        "anthropic-main",
        Behavior {
            always_status: Some(500),
            ..Default::default()
        },
    );
    let llmux = Llmux::start_with(
        &config(&m, &rx.endpoint(), ""),
        "default_config = \"main\"",
        &[],
    );
    let c = client();
    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .header("traceparent", format!("00-{TRACE}-{PARENT}-01"))
        .header("x-portkey-trace-id", "otel-test-1")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "secret prompt text"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();

    // The provider got the attempt's context: same trace, a span id of llmux's own.
    let sent = m.stats("openai-main").last_headers;
    let tp = sent.get("traceparent").expect("traceparent sent upstream");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"), "{tp}");
    assert_ne!(parts[2], PARENT, "{tp}");

    let spans = rx
        .wait_for("request span with two attempts", |s| {
            !request_spans(s).is_empty()
                && s.iter()
                    .filter(|x| x.kind == SpanKind::Client as i32)
                    .count()
                    >= 2
        })
        .await;
    let req = request_spans(&spans)[0].clone();
    assert_eq!(hex(&req.trace_id), TRACE);
    assert_eq!(hex(&req.parent), PARENT, "the client's span is the parent");
    assert_eq!(req.service, "llmux-under-test");
    assert_eq!(req.name, "chat gpt-4o");
    assert_eq!(req.attr("gen_ai.operation.name"), "chat");
    assert_eq!(req.attr("gen_ai.request.model"), "gpt-4o");
    assert_eq!(req.attr("gen_ai.provider.name"), "openai");
    assert_eq!(
        req.attr("gen_ai.response.model"),
        body["model"].as_str().unwrap()
    );
    assert_eq!(
        req.attr("gen_ai.usage.input_tokens"),
        body["usage"]["prompt_tokens"].to_string()
    );
    assert_eq!(
        req.attr("gen_ai.usage.output_tokens"),
        body["usage"]["completion_tokens"].to_string()
    );
    assert_eq!(req.attr("gen_ai.response.finish_reasons"), "stop");
    assert_eq!(req.attr("http.response.status_code"), "200");
    assert_eq!(req.attr("llmux.config"), "main");
    assert_eq!(req.attr("llmux.leaf_path"), "config.targets[1]");
    assert_eq!(req.attr("llmux.virtual_key"), "openai-main");
    assert_eq!(req.attr("llmux.trace_id"), "otel-test-1");
    assert_eq!(req.attr("llmux.attempts"), "2");
    // Content is not exported unless asked for.
    assert!(!req.attrs.contains_key("gen_ai.input.messages"), "{req:?}");
    assert!(!format!("{spans:?}").contains("secret prompt text"));

    let mut attempts: Vec<&Got> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|a| a.attr("llmux.leaf_path").to_owned());
    for a in &attempts {
        assert_eq!(a.trace_id, req.trace_id);
        assert_eq!(
            a.parent, req.span_id,
            "attempts are children of the request"
        );
        assert_eq!(a.attr("gen_ai.operation.name"), "chat");
        assert_eq!(a.attr("server.address"), "127.0.0.1");
    }
    let (failed, served) = (attempts[0], attempts[1]);
    assert_eq!(failed.attr("llmux.leaf_path"), "config.targets[0]");
    assert_eq!(failed.attr("gen_ai.provider.name"), "anthropic");
    assert_eq!(
        failed.attr("gen_ai.request.model"),
        "claude-3-5-haiku-20241022"
    );
    assert_eq!(failed.attr("http.response.status_code"), "500");
    assert_eq!(failed.attr("error.type"), "server_error");
    assert_eq!(failed.status_code, 2, "an ERROR status");
    assert_eq!(served.attr("gen_ai.provider.name"), "openai");
    assert_eq!(served.attr("gen_ai.request.model"), "gpt-4o-mini");
    assert_eq!(served.attr("http.response.status_code"), "200");
    assert_eq!(
        hex(&served.span_id),
        parts[2],
        "the provider saw this attempt's span"
    );
    assert!(
        served
            .attr("gen_ai.usage.output_tokens")
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let reqs = rx.requests.lock().unwrap().clone();
    assert!(reqs
        .iter()
        .all(|(p, t)| p == "/v1/traces" && t == "application/x-protobuf"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_end_their_span_at_the_end_and_content_capture_is_opt_in() {
    let rx = Receiver::start().await;
    let m = mock();
    let llmux = Llmux::start_with(
        &config(
            &m,
            &format!("{}/v1/traces", rx.endpoint()),
            "capture_content = true",
        ),
        "default_config = \"main\"",
        &[],
    );
    let c = client();
    // Without a traceparent llmux starts the trace.
    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o", "stream": true,
                      "stream_options": {"include_usage": true},
                      "messages": [{"role": "user", "content": "capture me"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
    }
    let spans = rx
        .wait_for("the stream's request span", |s| {
            !request_spans(s).is_empty()
        })
        .await;
    let req = request_spans(&spans)[0];
    assert!(req.parent.is_empty(), "a root span: {req:?}");
    assert_eq!(req.attr("llmux.stream"), "true");
    assert_eq!(req.attr("llmux.leaf_path"), "config.targets[0]");
    assert_eq!(req.attr("gen_ai.provider.name"), "anthropic");
    assert!(
        req.attr("gen_ai.usage.output_tokens")
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert!(
        req.attr("gen_ai.input.messages").contains("capture me"),
        "{req:?}"
    );

    // A non-streamed answer's completion is captured too.
    let r = c
        .post(llmux.url("/v1/chat/completions"))
        .json(&chat_body("gpt-4o"))
        .send()
        .await
        .unwrap();
    let answer = r.text().await.unwrap();
    let spans = rx
        .wait_for("the second request span", |s| request_spans(s).len() >= 2)
        .await;
    let second = request_spans(&spans)
        .into_iter()
        .find(|s| s.attr("llmux.stream") == "false")
        .expect("the non-streamed request's span");
    let content: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let said = content["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        second.attr("gen_ai.output.messages").contains(said),
        "{second:?}"
    );
}

/// Config validation names the field and the fix.
#[test]
fn a_bad_endpoint_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:1\"\n[telemetry]\notlp_endpoint = \"grpc://collector:4317\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_llmux"))
        .arg("check-config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("telemetry.otlp_endpoint"), "{err}");
    assert!(err.contains("http://"), "{err}");
}

/// A collector that refuses connections, or accepts and never answers, costs spans, not
/// requests: every request is answered, and the daemon still stops promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_outage_costs_no_request() {
    // Accepts and never reads or answers.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = hang.accept().await {
            h.lock().unwrap().push(s);
        }
    });
    let refused = format!("http://127.0.0.1:{}", free_port());
    for endpoint in [refused, format!("http://{hang_addr}")] {
        let m = mock();
        let mut llmux = Llmux::start_with(
            &config(&m, &endpoint, "max_queue = 64"),
            "default_config = \"main\"",
            &[],
        );
        let c = client();
        let mut ok = 0;
        for round in 0..10 {
            let sends = (0..20).map(|_| {
                c.post(llmux.url("/v1/chat/completions"))
                    .json(&chat_body("gpt-4o"))
                    .send()
            });
            for r in futures_util::future::join_all(sends).await {
                let r = r.unwrap();
                assert_eq!(r.status(), 200, "round {round} via {endpoint}");
                ok += 1;
            }
        }
        assert_eq!(ok, 200);
        assert_eq!(m.stats("anthropic-main").requests, 200);
        // Shutdown waits for the export at most its timeout (1 s here), then exits.
        llmux.signal("TERM");
        assert_eq!(
            llmux.wait_exit(Duration::from_secs(15)),
            Some(0),
            "{}",
            llmux.logs()
        );
    }
}

/// Sampling is decided before any span exists: a client's `traceparent` flag decides for its
/// request; without one, `sample_ratio` does (0 here: nothing unless the client asks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_client_then_the_ratio() {
    let rx = Receiver::start().await;
    let m = mock();
    let llmux = Llmux::start_with(
        &config(&m, &rx.endpoint(), "sample_ratio = 0.0"),
        "default_config = \"main\"",
        &[],
    );
    let c = client();
    let send = |tp: Option<String>| {
        let mut r = c
            .post(llmux.url("/v1/chat/completions"))
            .json(&chat_body("gpt-4o"));
        if let Some(tp) = tp {
            r = r.header("traceparent", tp);
        }
        r.send()
    };
    for _ in 0..5 {
        assert_eq!(send(None).await.unwrap().status(), 200);
    }
    // A traceparent that is not one (garbage, wrong version, absurd length) decides nothing:
    // the request is served, and with sample_ratio 0 not traced.
    for junk in [
        "garbage".to_owned(),
        format!("ff-{TRACE}-{PARENT}-01"),
        format!("00-{}-{PARENT}-01", "0".repeat(32)),
        format!("00-{TRACE}-{PARENT}-01-{}", "x".repeat(4000)),
    ] {
        assert_eq!(send(Some(junk)).await.unwrap().status(), 200);
    }
    let unsampled = "11111111111111111111111111111111";
    let r = send(Some(format!("00-{unsampled}-{PARENT}-00")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !m.stats("anthropic-main")
            .last_headers
            .contains_key("traceparent"),
        "an unsampled request propagates nothing"
    );
    let r = send(Some(format!("00-{TRACE}-{PARENT}-01"))).await.unwrap();
    assert_eq!(r.status(), 200);
    let spans = rx
        .wait_for("the sampled request's spans", |s| {
            s.iter().any(|x| x.kind == SpanKind::Client as i32) && !request_spans(s).is_empty()
        })
        .await;
    // One more batch period: anything else exported would have arrived by now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spans = {
        let all = rx.spans.lock().unwrap().clone();
        assert!(all.len() >= spans.len());
        all
    };
    assert_eq!(
        spans.len(),
        2,
        "one request and one attempt span: {spans:#?}"
    );
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == TRACE),
        "{spans:#?}"
    );
}
