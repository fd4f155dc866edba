//! The OpenAI Responses API (OpenAI and Azure accounts) over real HTTP: shapes,
//! the function-call rule, `previous_response_id`, retrieve / input items /
//! delete / cancel, streaming and validation.

use std::time::Instant;

use crate::common::{self, *};
use llmux_mock::{Behavior, MockServer, StreamFailMode};
use serde_json::{json, Value};

fn url(mock: &MockServer, account: &str) -> String {
    format!("{}/v1/responses", mock.url(account))
}

async fn get(url: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("authorization", "Bearer sk-test")
        .send()
        .await
        .expect("send")
}

async fn json_of(resp: reqwest::Response) -> Value {
    resp.json().await.expect("json")
}

fn weather_tool() -> Value {
    json!({"type": "function", "name": "wx", "parameters": {"type": "object"}, "strict": false})
}

async fn assert_error(resp: reqwest::Response, status: u16, param: Value, code: Value) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let v = json_of(resp).await;
    assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
    assert_eq!(v["error"]["param"], param, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string());
    v
}

#[tokio::test]
async fn responses_text_json_shape_and_headers() {
    let mock = server();
    let resp = post(
        &url(&mock, "r"),
        json!({"model": "gpt-4o-mini", "input": "Hello there, mock!"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-type"], "application/json");
    assert!(h["x-request-id"].to_str().unwrap().starts_with("req_"));
    assert_eq!(h["x-ratelimit-reset-requests"], "6ms");
    let v = json_of(resp).await;
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("resp_mock"), "{id}");
    assert_eq!(v["object"], "response");
    assert!(v["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert_eq!(v["error"], Value::Null);
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(v["instructions"], Value::Null);
    assert_eq!(v["previous_response_id"], Value::Null);
    assert_eq!(v["max_output_tokens"], Value::Null);
    assert_eq!(v["tools"], json!([]));
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(v["parallel_tool_calls"], true);
    assert_eq!(v["store"], true);
    assert_eq!(v["metadata"], json!({}));
    assert_eq!(v["temperature"], 1.0);
    assert_eq!(v["top_p"], 1.0);
    assert_eq!(v["text"], json!({"format": {"type": "text"}}));
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    let msg = &output[0];
    assert_eq!(msg["type"], "message");
    assert!(msg["id"].as_str().unwrap().starts_with("msg_mock"));
    assert_eq!(msg["status"], "completed");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(
        msg["content"],
        json!([{"type": "output_text", "text": "Hello from mock r", "annotations": []}])
    );
    // "Hello there, mock!" = 18 chars -> 18/4+1 = 5
    assert_eq!(
        v["usage"],
        json!({
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 9
        })
    );

    let s = mock.stats("r");
    assert_eq!(s.requests, 1);
    assert_eq!(s.by_endpoint["responses"], 1);
    assert_eq!(s.statuses[&200], 1);
    assert_eq!(s.last_path, "/r/v1/responses");
    assert_eq!(s.last_body.unwrap()["input"], "Hello there, mock!");

    // Ids are unique per request.
    let v2 = json_of(post(&url(&mock, "r"), json!({"model": "m", "input": "x"})).await).await;
    assert_ne!(v2["id"], v["id"]);
    assert_ne!(v2["output"][0]["id"], v["output"][0]["id"]);
}

#[tokio::test]
async fn responses_instructions_and_input_echo() {
    let mock = server();
    let body = json!({
        "model": "gpt-4o",
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": "Hello there, mock!"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hi."}]},
            {"type": "message", "role": "developer", "content": [
                {"type": "input_text", "text": "Look:"},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "auto"}
            ]},
            {"type": "reasoning", "id": "rs_keep", "summary": []}
        ],
        "metadata": {"k": "v"},
        "temperature": 0.2,
        "top_p": 0.9,
        "text": {"format": {"type": "json_object"}},
        "tool_choice": "none",
        "tools": [weather_tool()],
        "parallel_tool_calls": false,
        "max_output_tokens": 100
    });
    let v = json_of(post(&url(&mock, "e"), body.clone()).await).await;
    assert_eq!(v["instructions"], "Be brief.");
    assert_eq!(v["metadata"], body["metadata"]);
    assert_eq!(v["temperature"], 0.2);
    assert_eq!(v["top_p"], 0.9);
    assert_eq!(v["text"], body["text"]);
    assert_eq!(v["tool_choice"], "none");
    assert_eq!(v["tools"], body["tools"]);
    assert_eq!(v["parallel_tool_calls"], false);
    assert_eq!(v["max_output_tokens"], 100);
    // tool_choice "none": a message despite the function tool.
    assert_eq!(v["output"][0]["type"], "message");
    // 9 + 18 + 3 + 5 = 35 chars -> 35/4+1 = 9
    assert_eq!(v["usage"]["input_tokens"], 9);
    assert_eq!(mock.stats("e").last_body.unwrap(), body);

    // The input items as stored: typed, with ids, string content as parts.
    let id = v["id"].as_str().unwrap();
    let items =
        json_of(get(&format!("{}/{id}/input_items?order=asc", url(&mock, "e"))).await).await;
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 4);
    assert_eq!(data[0]["type"], "message");
    assert_eq!(data[0]["role"], "user");
    assert_eq!(
        data[0]["content"],
        json!([{"type": "input_text", "text": "Hello there, mock!"}])
    );
    assert_eq!(data[1]["role"], "assistant");
    assert_eq!(data[2]["content"][1]["type"], "input_image");
    assert_eq!(data[3]["id"], "rs_keep");
    assert!(data.iter().all(|i| i["id"].is_string()));
}

#[tokio::test]
async fn responses_function_call_then_follow_up() {
    let mock = server();
    let u = url(&mock, "f");
    // The wire doc's fixture request.
    let first = json_of(
        post(
            &u,
            json!({"model": "gpt-4o-mini", "input": "Weather in Paris?", "tools": [weather_tool()]}),
        )
        .await,
    )
    .await;
    assert_eq!(first["status"], "completed");
    let output = first["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    let call = &output[0];
    assert_eq!(call["type"], "function_call");
    assert!(call["id"].as_str().unwrap().starts_with("fc_mock"));
    let call_id = call["call_id"].as_str().unwrap();
    assert!(call_id.starts_with("call_mock"));
    assert_eq!(call["name"], "wx");
    assert_eq!(call["arguments"], "{}");
    assert_eq!(call["status"], "completed");
    // 17 chars -> 5; "{}" is one output token.
    assert_eq!(first["usage"]["input_tokens"], 5);
    assert_eq!(first["usage"]["output_tokens"], 1);

    let follow = json!({
        "model": "gpt-4o-mini",
        "previous_response_id": first["id"],
        "input": [{"type": "function_call_output", "call_id": call_id, "output": "18C"}],
        "tools": [weather_tool()]
    });
    let second = json_of(post(&u, follow.clone()).await).await;
    assert_eq!(second["previous_response_id"], first["id"]);
    assert_eq!(second["output"][0]["type"], "message");
    assert_eq!(
        second["output"][0]["content"][0]["text"],
        "Hello from mock f"
    );
    // Prior conversation (17 + "{}" 2) + "18C" 3 = 22 chars -> 6
    assert_eq!(second["usage"]["input_tokens"], 6);
    // The account received just the new item; the conversation lives in the mock.
    let last = mock.stats("f").last_body.unwrap();
    assert_eq!(last["input"].as_array().unwrap().len(), 1);
    assert_eq!(last["previous_response_id"], first["id"]);

    // The follow-up's input items: the whole conversation.
    let id = second["id"].as_str().unwrap();
    let items = json_of(get(&format!("{u}/{id}/input_items?order=asc")).await).await;
    let types: Vec<&str> = items["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["message", "function_call", "function_call_output"]);
    assert_eq!(items["data"][1]["call_id"], call_id);

    // A third turn chains on: without a function_call_output, the tool is called again.
    let third = json_of(
        post(
            &u,
            json!({"model": "m", "previous_response_id": id, "input": "And Rome?", "tools": [weather_tool()],
                   "tool_choice": {"type": "function", "name": "other"}}),
        )
        .await,
    )
    .await;
    assert_eq!(third["output"][0]["type"], "function_call");
    assert_eq!(third["output"][0]["name"], "other");
    let items = json_of(
        get(&format!(
            "{u}/{}/input_items?order=asc",
            third["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(items["data"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn responses_unknown_previous_response_id() {
    let mock = server();
    let resp = post(
        &url(&mock, "a"),
        json!({"model": "m", "input": "hi", "previous_response_id": "resp_nope"}),
    )
    .await;
    let v = assert_error(
        resp,
        400,
        json!("previous_response_id"),
        json!("previous_response_not_found"),
    )
    .await;
    assert_eq!(
        v["error"]["message"],
        "Previous response with id 'resp_nope' not found."
    );
    assert_eq!(mock.stats("a").statuses[&400], 1);

    // A response of another account is unknown here.
    let other = json_of(post(&url(&mock, "b"), json!({"model": "m", "input": "hi"})).await).await;
    let id = other["id"].as_str().unwrap();
    let resp = post(
        &url(&mock, "a"),
        json!({"model": "m", "input": "more", "previous_response_id": id}),
    )
    .await;
    let v = assert_error(
        resp,
        400,
        json!("previous_response_id"),
        json!("previous_response_not_found"),
    )
    .await;
    assert_eq!(
        v["error"]["message"],
        format!("Previous response with id '{id}' not found.")
    );
    let resp = get(&format!("{}/{id}", url(&mock, "a"))).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn responses_retrieve_input_items_delete_cancel() {
    let mock = server();
    let u = url(&mock, "g");
    let created = json_of(
        post(
            &u,
            json!({"model": "m", "input": [
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {"role": "user", "content": "three"}
            ]}),
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();

    let resp = get(&format!("{u}/{id}")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json_of(resp).await, created);

    let texts = |v: &Value| -> Vec<String> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["content"][0]["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let desc = json_of(get(&format!("{u}/{id}/input_items")).await).await;
    assert_eq!(desc["object"], "list");
    assert_eq!(texts(&desc), ["three", "two", "one"]);
    assert_eq!(desc["first_id"], desc["data"][0]["id"]);
    assert_eq!(desc["last_id"], desc["data"][2]["id"]);
    assert_eq!(desc["has_more"], false);
    assert_eq!(desc["data"][1]["content"][0]["type"], "output_text");
    let asc = json_of(get(&format!("{u}/{id}/input_items?order=asc")).await).await;
    assert_eq!(texts(&asc), ["one", "two", "three"]);
    let page = json_of(get(&format!("{u}/{id}/input_items?order=asc&limit=1")).await).await;
    assert_eq!(texts(&page), ["one"]);
    assert_eq!(page["has_more"], true);
    let after = page["last_id"].as_str().unwrap();
    let page = json_of(
        get(&format!(
            "{u}/{id}/input_items?order=asc&limit=1&after={after}"
        ))
        .await,
    )
    .await;
    assert_eq!(texts(&page), ["two"]);

    let resp = client()
        .post(format!("{u}/{id}/cancel"))
        .send()
        .await
        .unwrap();
    let v = assert_error(resp, 400, Value::Null, Value::Null).await;
    assert_eq!(
        v["error"]["message"],
        "Only responses created with background=true can be cancelled."
    );

    let resp = client().delete(format!("{u}/{id}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json_of(resp).await,
        json!({"id": id, "object": "response.deleted", "deleted": true})
    );
    for resp in [
        get(&format!("{u}/{id}")).await,
        get(&format!("{u}/{id}/input_items")).await,
        client().delete(format!("{u}/{id}")).send().await.unwrap(),
        client()
            .post(format!("{u}/{id}/cancel"))
            .send()
            .await
            .unwrap(),
    ] {
        let v = assert_error(resp, 404, Value::Null, Value::Null).await;
        assert_eq!(
            v["error"]["message"],
            format!("Response with id '{id}' not found.")
        );
    }
    let resp = post(
        &u,
        json!({"model": "m", "input": "x", "previous_response_id": id}),
    )
    .await;
    assert_eq!(resp.status(), 400);

    let s = mock.stats("g");
    assert_eq!(s.by_endpoint["responses"], 2);
    assert_eq!(s.by_endpoint["responses_get"], 2);
    assert_eq!(s.by_endpoint["responses_input_items"], 5);
    assert_eq!(s.by_endpoint["responses_delete"], 2);
    assert_eq!(s.by_endpoint["responses_cancel"], 2);
    assert_eq!(s.last_path, "/g/v1/responses");

    // Unsupported methods on these paths are unknown URLs.
    let resp = get(&u).await;
    assert_eq!(resp.status(), 404);
    assert_eq!(mock.stats("").by_endpoint["not_found"], 1);
}

#[tokio::test]
async fn responses_store_false_is_not_retrievable() {
    let mock = server();
    let u = url(&mock, "s");
    let v = json_of(post(&u, json!({"model": "m", "input": "hi", "store": false})).await).await;
    assert_eq!(v["store"], false);
    assert_eq!(v["status"], "completed");
    let id = v["id"].as_str().unwrap();
    assert_eq!(get(&format!("{u}/{id}")).await.status(), 404);
    let resp = post(
        &u,
        json!({"model": "m", "input": "more", "previous_response_id": id}),
    )
    .await;
    assert_error(
        resp,
        400,
        json!("previous_response_id"),
        json!("previous_response_not_found"),
    )
    .await;

    // store:false may still continue a stored response.
    let stored = json_of(post(&u, json!({"model": "m", "input": "hi"})).await).await;
    let v = json_of(
        post(
            &u,
            json!({"model": "m", "input": "more", "store": false, "previous_response_id": stored["id"]}),
        )
        .await,
    )
    .await;
    assert_eq!(v["previous_response_id"], stored["id"]);
    assert_eq!(
        get(&format!("{u}/{}", v["id"].as_str().unwrap()))
            .await
            .status(),
        404
    );
}

fn event_types(frames: &[Frame]) -> Vec<String> {
    frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let v = f.json();
            let event = f.event.clone().expect("event line");
            assert_eq!(v["type"], event.as_str(), "{v}");
            assert_eq!(v["sequence_number"], i, "{v}");
            event
        })
        .collect()
}

#[tokio::test]
async fn responses_stream_event_sequence() {
    let mock = server();
    let u = url(&mock, "st");
    let resp = post(
        &u,
        json!({"model": "gpt-4o-mini", "input": "Hello there, mock!", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().contains_key("x-request-id"));
    let text = read_timed(resp, Instant::now()).await;
    assert!(text.error.is_none());
    let text = text.text();
    assert!(!text.contains("[DONE]"));
    let frames = frames(&text);
    let types = event_types(&frames);
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected.extend(["response.output_text.delta"; 5]);
    expected.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(types, expected);

    let created = frames[0].json();
    let r0 = &created["response"];
    assert_eq!(r0["status"], "in_progress");
    assert_eq!(r0["output"], json!([]));
    assert_eq!(r0["usage"], Value::Null);
    assert_eq!(r0["model"], "gpt-4o-mini");
    let id = r0["id"].as_str().unwrap();
    assert_eq!(frames[1].json()["response"], *r0);

    let added = frames[2].json();
    assert_eq!(added["output_index"], 0);
    let item_id = added["item"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        added["item"],
        json!({"type": "message", "id": item_id, "status": "in_progress", "role": "assistant", "content": []})
    );
    let ids = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
    let with_ids = |extra: Value| {
        let mut v = ids.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let strip = |v: Value| {
        let mut v = v;
        let o = v.as_object_mut().unwrap();
        o.remove("type");
        o.remove("sequence_number");
        v
    };
    assert_eq!(
        strip(frames[3].json()),
        with_ids(json!({"part": {"type": "output_text", "text": "", "annotations": []}}))
    );
    let mut content = String::new();
    for f in &frames[4..9] {
        let v = f.json();
        assert_eq!(v["item_id"], item_id.as_str());
        assert_eq!(v["logprobs"], json!([]));
        content.push_str(v["delta"].as_str().unwrap());
    }
    assert_eq!(content, "Hello from mock st");
    assert_eq!(
        strip(frames[9].json()),
        with_ids(json!({"text": content, "logprobs": []}))
    );
    let part = json!({"type": "output_text", "text": content, "annotations": []});
    assert_eq!(strip(frames[10].json()), with_ids(json!({"part": part})));
    let done = frames[11].json();
    assert_eq!(
        done["item"],
        json!({"type": "message", "id": item_id, "status": "completed", "role": "assistant", "content": [part]})
    );
    let completed = frames[12].json()["response"].clone();
    assert_eq!(completed["id"], id);
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"], json!([done["item"]]));
    assert_eq!(completed["usage"]["input_tokens"], 5);
    assert_eq!(completed["usage"]["output_tokens"], 4);

    // Stored like a non-streamed response.
    let got = json_of(get(&format!("{u}/{id}")).await).await;
    assert_eq!(got, completed);
    assert_eq!(mock.stats("st").client_disconnects, 0);
}

#[tokio::test]
async fn responses_stream_function_call_and_chunking() {
    let mock = server();
    mock.set_behavior(
        "sf",
        Behavior {
            stream_chunks: 2,
            ..Default::default()
        },
    );
    let resp = post(
        &url(&mock, "sf"),
        json!({"model": "m", "input": "Weather in Paris?", "tools": [weather_tool()], "stream": true}),
    )
    .await;
    let frames = frames(&resp.text().await.unwrap());
    assert_eq!(
        event_types(&frames),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let added = frames[2].json();
    assert_eq!(added["item"]["type"], "function_call");
    assert_eq!(added["item"]["arguments"], "");
    assert_eq!(added["item"]["status"], "in_progress");
    assert_eq!(added["item"]["name"], "wx");
    let item_id = added["item"]["id"].as_str().unwrap();
    let delta = frames[3].json();
    assert_eq!(delta["item_id"], item_id);
    assert_eq!(delta["output_index"], 0);
    assert_eq!(delta["delta"], "{}");
    assert_eq!(frames[4].json()["arguments"], "{}");
    let item = &frames[5].json()["item"];
    assert_eq!(item["status"], "completed");
    assert_eq!(item["arguments"], "{}");
    assert_eq!(frames[6].json()["response"]["output"][0], *item);

    // Text split into `stream_chunks` deltas.
    let resp = post(
        &url(&mock, "sf"),
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    let frames = common::frames(&resp.text().await.unwrap());
    let deltas = event_types(&frames)
        .iter()
        .filter(|t| *t == "response.output_text.delta")
        .count();
    assert_eq!(deltas, 2);
}

#[tokio::test]
async fn responses_stream_failures() {
    let mock = server();
    let fail = |mode| Behavior {
        stream_fail_after: Some(2),
        stream_fail_mode: mode,
        ..Default::default()
    };
    mock.set_behavior("e", fail(StreamFailMode::ErrorEvent));
    let resp = post(
        &url(&mock, "e"),
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let frames = frames(&resp.text().await.unwrap());
    assert_eq!(
        event_types(&frames),
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "error",
        ]
    );
    let e = frames[6].json();
    assert_eq!(e["code"], "server_error");
    assert_eq!(e["param"], Value::Null);
    assert!(e["message"].is_string());
    // The response never completed: stored as failed.
    let id = frames[0].json()["response"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let got = json_of(get(&format!("{}/{id}", url(&mock, "e"))).await).await;
    assert_eq!(got["status"], "failed");
    assert_eq!(got["error"]["code"], "server_error");
    assert_eq!(got["output"], json!([]));

    mock.set_behavior("d", fail(StreamFailMode::Drop));
    let resp = post(
        &url(&mock, "d"),
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    let timed = read_timed(resp, Instant::now()).await;
    assert!(timed.error.is_some(), "expected a body error");
    let frames = common::frames(&timed.text());
    assert_eq!(frames.len(), 6);
    assert_eq!(
        frames[5].event.as_deref(),
        Some("response.output_text.delta")
    );

    mock.set_behavior("n", fail(StreamFailMode::NoTerminator));
    let resp = post(
        &url(&mock, "n"),
        json!({"model": "m", "input": "hi", "stream": true}),
    )
    .await;
    let text = resp.text().await.unwrap();
    assert_eq!(common::frames(&text).len(), 6);
    assert!(!text.contains("response.completed"));
}

#[tokio::test]
async fn azure_responses_with_api_key() {
    let mock = server();
    let base = format!("{}/openai/v1/responses", mock.url("az"));
    let resp = client()
        .post(&base)
        .header("api-key", "k")
        .json(&json!({"model": "gpt4o-prod", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "9999");
    assert!(!resp.headers().contains_key("x-ratelimit-reset-requests"));
    let v = json_of(resp).await;
    assert_eq!(v["model"], "gpt4o-prod");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello from mock az");
    let id = v["id"].as_str().unwrap();
    let s = mock.stats("az");
    assert_eq!(s.by_endpoint["azure_responses"], 1);
    assert_eq!(s.last_headers["api-key"], "k");

    // An api-version is accepted and ignored; retrieve and follow up on Azure paths.
    let got = json_of(
        client()
            .get(format!("{base}/{id}?api-version=preview"))
            .header("api-key", "k")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(got, v);
    let v2 = json_of(
        client()
            .post(format!(
                "{}/openai/responses?api-version=2025-04-01-preview",
                mock.url("az")
            ))
            .header("api-key", "k")
            .json(&json!({"model": "gpt4o-prod", "input": "more", "previous_response_id": id}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v2["previous_response_id"], id);
    let items = json_of(
        get(&format!(
            "{base}/{}/input_items",
            v2["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(items["data"].as_array().unwrap().len(), 3);

    // Validation errors keep the OpenAI envelope on Azure.
    let resp = client()
        .post(&base)
        .header("api-key", "k")
        .json(&json!({"model": "gpt4o-prod", "input": "x", "previous_response_id": "resp_x"}))
        .send()
        .await
        .unwrap();
    assert_error(
        resp,
        400,
        json!("previous_response_id"),
        json!("previous_response_not_found"),
    )
    .await;
    let resp = client()
        .delete(format!("{base}/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = get(&format!("{base}/{id}")).await;
    assert_error(resp, 404, Value::Null, Value::Null).await;
    let s = mock.stats("az");
    assert_eq!(s.by_endpoint["azure_responses"], 3);
    assert_eq!(s.by_endpoint["azure_responses_get"], 2);
    assert_eq!(s.by_endpoint["azure_responses_input_items"], 1);
    assert_eq!(s.by_endpoint["azure_responses_delete"], 1);

    // Fault injection answers in Azure's envelope, as for chat.
    mock.set_behavior(
        "az",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(3),
            ..Default::default()
        },
    );
    let resp = client()
        .post(&base)
        .header("api-key", "k")
        .json(&json!({"model": "gpt4o-prod", "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "429");
}

#[tokio::test]
async fn responses_fault_injection_like_chat() {
    let mock = server();
    mock.set_behavior(
        "rl",
        Behavior {
            always_status: Some(429),
            retry_after_s: Some(7),
            ..Default::default()
        },
    );
    let resp = post(&url(&mock, "rl"), json!({"model": "m", "input": "hi"})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["retry-after-ms"], "7000");
    let v = json_of(resp).await;
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    let s = mock.stats("rl");
    assert_eq!(s.statuses[&429], 1);
    assert_eq!(s.by_endpoint["responses"], 1);
    // Nothing was stored by the failed request.
    mock.reset();
    let v = json_of(post(&url(&mock, "rl"), json!({"model": "m", "input": "hi"})).await).await;
    let id = v["id"].as_str().unwrap();
    assert_eq!(
        get(&format!("{}/{id}", url(&mock, "rl"))).await.status(),
        200
    );
    // Reset forgets stored responses.
    mock.reset();
    assert_eq!(
        get(&format!("{}/{id}", url(&mock, "rl"))).await.status(),
        404
    );
}

#[tokio::test]
async fn responses_validation_errors() {
    let mock = server();
    let u = url(&mock, "v");
    let cases = [
        (
            json!({"input": "hi"}),
            "model",
            "missing_required_parameter",
        ),
        (json!({"model": "m"}), "input", "missing_required_parameter"),
        (
            json!({"model": "m", "input": {"role": "user"}}),
            "input",
            "invalid_type",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": "a"}, {"type": "bogus"}]}),
            "input[1].type",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}),
            "input[0].call_id",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}),
            "input[0].output",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "call_id": "c", "arguments": "{}"}]}),
            "input[0].name",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": [{"role": "tool", "content": "x"}]}),
            "input[0].role",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": [{"role": "user"}]}),
            "input[0].content",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]}),
            "input[0].content[0]",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "output_text", "text": "x"}]}]}),
            "input[0].content[0]",
            "invalid_value",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]}),
            "input[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function", "function": {"name": "wx"}}]}),
            "tools[0].name",
            "missing_required_parameter",
        ),
        (
            json!({"model": "m", "input": "x", "max_output_tokens": "5"}),
            "max_output_tokens",
            "invalid_type",
        ),
    ];
    for (body, param, code) in cases {
        let resp = post(&u, body.clone()).await;
        assert_error(resp, 400, json!(param), json!(code)).await;
    }
    let resp = post(
        &u,
        json!({"model": "m", "input": [{"type": "input_audio"}]}),
    )
    .await;
    let v = assert_error(resp, 400, json!("input[0].type"), json!("invalid_value")).await;
    assert_eq!(
        v["error"]["message"],
        "Invalid value: 'input_audio'. Supported values are: 'message', 'function_call', 'function_call_output', and 'reasoning'."
    );
    let resp = post(&u, json!({"model": "m", "input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]})).await;
    let v = json_of(resp).await;
    assert_eq!(
        v["error"]["message"],
        "Invalid value: 'input_text'. Supported values are: 'output_text' and 'refusal'."
    );
    let resp = client().post(&u).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.stats("v").statuses[&400], 17);
    assert!(!mock.stats("v").statuses.contains_key(&200));
}

#[tokio::test]
async fn responses_max_output_tokens_incomplete() {
    let mock = server();
    mock.set_behavior(
        "p",
        Behavior {
            reply: Some("one two three four five".into()),
            ..Default::default()
        },
    );
    let u = url(&mock, "p");
    let v = json_of(
        post(
            &u,
            json!({"model": "m", "input": "hi", "max_output_tokens": 2}),
        )
        .await,
    )
    .await;
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["max_output_tokens"], 2);
    assert_eq!(v["output"][0]["status"], "incomplete");
    assert_eq!(v["output"][0]["content"][0]["text"], "one two");
    assert_eq!(v["usage"]["output_tokens"], 2);

    let v = json_of(
        post(
            &u,
            json!({"model": "m", "input": "hi", "max_output_tokens": 5}),
        )
        .await,
    )
    .await;
    assert_eq!(v["status"], "completed");
    assert_eq!(v["incomplete_details"], Value::Null);

    let resp = post(
        &u,
        json!({"model": "m", "input": "hi", "max_output_tokens": 2, "stream": true}),
    )
    .await;
    let frames = frames(&resp.text().await.unwrap());
    let types = event_types(&frames);
    assert_eq!(types.last().unwrap(), "response.incomplete");
    assert!(!types.iter().any(|t| t == "response.completed"));
    let last = frames.last().unwrap().json();
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(
        frames[0].json()["response"]["incomplete_details"],
        Value::Null
    );
    let id = last["response"]["id"].as_str().unwrap();
    assert_eq!(
        json_of(get(&format!("{u}/{id}")).await).await,
        last["response"]
    );
}
