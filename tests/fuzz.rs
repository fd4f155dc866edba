//! Property-based fuzzing (bounded, deterministic per run count) of everything that parses
//! untrusted input: request bodies, the Anthropic translation both ways, configs (file and
//! inline). A committed corpus (`tests/corpus/`) of nasty inputs is replayed first. Properties:
//! never a panic; every rejection is a client error with a message; over HTTP, every malformed
//! request gets a 4xx, never a 5xx.

mod common;

use std::path::Path;

use llmux::config::Config;
use llmux::providers::anthropic::{
    translate_error, translate_request, translate_response, StreamOutput, StreamTranslator,
};
use llmux::providers::Endpoint;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Map, Value};

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(dir),
    )
    .unwrap()
    {
        let p = e.unwrap().path();
        out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
    }
    assert!(!out.is_empty());
    out
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_ ]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("tool"),
            Just("developer"),
            Just("text"),
            Just("image_url"),
            Just("function")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("role".to_owned()),
                    Just("content".to_owned()),
                    Just("messages".to_owned()),
                    Just("model".to_owned()),
                    Just("tool_calls".to_owned()),
                    Just("function".to_owned()),
                    Just("arguments".to_owned()),
                    Just("type".to_owned()),
                    Just("text".to_owned()),
                    Just("image_url".to_owned()),
                    Just("url".to_owned()),
                    Just("tools".to_owned()),
                    Just("tool_choice".to_owned()),
                    Just("max_tokens".to_owned()),
                    Just("stop".to_owned()),
                    Just("stream".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn chat_like() -> impl Strategy<Value = Map<String, Value>> {
    (
        json_value(),
        prop::collection::vec(json_value(), 0..4),
        json_value(),
    )
        .prop_map(|(model, messages, extra)| {
            let mut m = Map::new();
            m.insert("model".into(), model);
            m.insert("messages".into(), Value::Array(messages));
            if let Value::Object(o) = extra {
                m.extend(o);
            }
            m
        })
}

fn check_request(bytes: &[u8]) {
    for endpoint in [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings] {
        if let Err(e) = llmux::http::api::parse_body(endpoint, bytes, 64) {
            let v = llmux::http::error::envelope(&e);
            assert!(v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
            let status = actix_web::ResponseError::status_code(&e).as_u16();
            assert!(
                (400..500).contains(&status),
                "{status} for {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

fn check_anthropic_request(body: &Map<String, Value>) {
    if let Err(e) = translate_request(body, 1024) {
        assert!(!e.message.is_empty());
    }
}

fn check_stream(events: &[(String, String)]) {
    let mut t = StreamTranslator::new(true, 0, "m");
    let mut out = Vec::new();
    for (event, data) in events {
        t.on_event(event, data, &mut out);
    }
    for o in out {
        if let StreamOutput::Chunk(c) | StreamOutput::Error(c) = o {
            serde_json::from_str::<Value>(&c).expect("every emitted frame is JSON");
        }
    }
}

fn check_config(text: &str) {
    match Config::parse(text, Path::new("fuzz.toml"), &|_| None) {
        Ok(_) => {}
        Err(e) => assert!(e.to_string().starts_with("fuzz.toml: "), "{e}"),
    }
}

#[test]
fn corpus_replays() {
    for (_, bytes) in corpus("requests") {
        check_request(&bytes);
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) {
            check_anthropic_request(&m);
        }
    }
    for (_, bytes) in corpus("anthropic") {
        let _ = translate_response(&bytes, 0);
        for status in [400, 429, 500, 529, 200] {
            let (s, v) = translate_error(status, &bytes);
            assert!((400..600).contains(&s));
            assert!(v["error"]["message"].is_string());
        }
        let text = String::from_utf8_lossy(&bytes);
        let events: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(e, d)| (e.to_owned(), d.to_owned()))
            .collect();
        check_stream(&events);
    }
    for (name, bytes) in corpus("configs") {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            Config::parse(&text, Path::new("fuzz.toml"), &|_| None).is_err(),
            "{name} must be rejected"
        );
        check_config(&text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn request_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check_request(&bytes);
    }

    #[test]
    fn request_json_never_panics(body in chat_like()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        check_request(&bytes);
        check_anthropic_request(&body);
    }

    #[test]
    fn anthropic_responses_never_panic(v in json_value(), bytes in prop::collection::vec(any::<u8>(), 0..128), status in 0u16..1000) {
        let _ = translate_response(&serde_json::to_vec(&v).unwrap(), 0);
        let _ = translate_response(&bytes, 0);
        let (s, e) = translate_error(status, &serde_json::to_vec(&v).unwrap());
        prop_assert!((400..600).contains(&s));
        prop_assert!(e["error"]["message"].is_string());
    }

    #[test]
    fn anthropic_streams_never_panic(events in prop::collection::vec((
        prop_oneof![Just("message_start"), Just("content_block_start"), Just("content_block_delta"), Just("message_delta"), Just("message_stop"), Just("error"), Just("ping"), Just("")],
        json_value(),
    ), 0..12)) {
        let events: Vec<(String, String)> = events.into_iter().map(|(e, v)| (e.to_owned(), v.to_string())).collect();
        check_stream(&events);
    }

    #[test]
    fn config_text_never_panics(text in "[\\[\\]a-z_.=\"{},0-9 \n-]{0,200}") {
        check_config(&text);
    }

    #[test]
    fn inline_configs_are_rejected_with_paths_or_accepted(v in json_value()) {
        let cfg = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\n[virtual_keys.a]\nprovider = \"openai\"\n", Path::new("x.toml"), &|_| None).unwrap();
        if let Err(e) = cfg.inline_tree(&v.to_string()) {
            prop_assert!(e.path.starts_with("x-portkey-config"), "{}", e.path);
            prop_assert!(!e.message.is_empty());
        }
    }
}

/// Config mutations: every single-line deletion of the example config either still parses or
/// is rejected with the file name and a path.
#[test]
fn example_config_line_deletions() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for i in 0..lines.len() {
        let mutated: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| *l)
            .collect();
        check_config(&mutated.join("\n"));
    }
}

/// Over real HTTP: random mutations of valid requests are always answered, never with a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mutations_get_4xx_never_5xx() {
    let m = common::mock();
    let cfg = format!(
        "[virtual_keys.a]\nprovider = \"openai\"\nbase_url = \"{}/v1\"\n[virtual_keys.c]\nprovider = \"anthropic\"\nbase_url = \"{}\"\n[configs.main]\nstrategy = {{ mode = \"loadbalance\" }}\ntargets = [ {{ virtual_key = \"a\" }}, {{ virtual_key = \"c\" }} ]\n",
        m.url("a"),
        m.url("c")
    );
    let llmux = common::Llmux::start_with(&cfg, "default_config = \"main\"", &[]);
    let c = common::client();
    let url = llmux.url("/v1/chat/completions");
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let seeds: Vec<Vec<u8>> = corpus("requests").into_iter().map(|(_, b)| b).collect();
    let strategy = (
        0..seeds.len(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
    );
    for _ in 0..200 {
        let (seed, flips, cut) = strategy.new_tree(&mut runner).unwrap().current();
        let mut body = seeds[seed].clone();
        for (at, byte) in flips {
            if !body.is_empty() {
                let i = at.index(body.len());
                body[i] = byte;
            }
        }
        if cut.index(4) == 0 && !body.is_empty() {
            body.truncate(cut.index(body.len()));
        }
        let r = c
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("answered");
        let status = r.status().as_u16();
        assert!(
            status < 500,
            "{status} for {:?}: {}",
            String::from_utf8_lossy(&body),
            r.text().await.unwrap_or_default()
        );
    }
}
