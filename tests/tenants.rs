//! Scoped gateway keys on a real daemon: which configs, virtual keys and inline configs a key
//! may reach (403 otherwise, whether the target exists or not, and errors never list the
//! accounts a gateway has), and the key's metadata on the request log.

mod common;

use common::*;
use serde_json::{json, Value};

fn config(m: &MockServer) -> String {
    format!(
        r#"{keys}
[configs.search]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-main" }} ]

[configs.billing]
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "azure-east" }} ]

[auth]
keys = [
  {{ name = "admin-team", key_env = "LLMUX_KEY_ALL" }},
  {{ name = "search-team", key_env = "LLMUX_KEY_SEARCH", configs = ["search"], virtual_keys = ["openai-main"], allow_inline_configs = true, metadata = {{ team = "search" }} }},
  {{ name = "locked", key_env = "LLMUX_KEY_LOCKED", configs = ["search"], allow_inline_configs = false }},
]
"#,
        keys = provider_keys(m)
    )
}

async fn post(
    c: &reqwest::Client,
    llmux: &Llmux,
    key: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut r = c
        .post(llmux.url("/v1/chat/completions"))
        .bearer_auth(key)
        .json(&chat_body("gpt-4o-mini"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_keys_reach_only_their_configs_and_accounts() {
    let m = mock();
    let llmux = Llmux::start_with(
        &config(&m),
        "default_config = \"billing\"",
        &[
            ("LLMUX_KEY_ALL", "key-all-0000"),
            ("LLMUX_KEY_SEARCH", "key-search-0000"),
            ("LLMUX_KEY_LOCKED", "key-locked-0000"),
        ],
    );
    let c = client();
    let (all, search, locked) = ("key-all-0000", "key-search-0000", "key-locked-0000");
    let cfg = |id: &'static str| ("x-portkey-config", id);
    let vk = |name: &'static str| ("x-portkey-virtual-key", name);

    // The unscoped key reaches everything, as without scopes.
    for h in [cfg("search"), cfg("billing"), vk("anthropic-main")] {
        assert_eq!(post(&c, &llmux, all, &[h]).await.0, 200, "{h:?}");
    }
    assert_eq!(
        post(&c, &llmux, all, &[]).await.0,
        200,
        "the default config"
    );

    // The scoped key: its config and account only.
    let calls = m.stats("azure-east").requests;
    assert_eq!(post(&c, &llmux, search, &[cfg("search")]).await.0, 200);
    for (h, names) in [
        (cfg("billing"), "config `billing`"),
        (vk("azure-east"), "virtual key `azure-east`"),
        // Unknown names get the same 403: a scoped key cannot probe what exists.
        (cfg("no-such"), "config `no-such`"),
        (vk("no-such"), "virtual key `no-such`"),
    ] {
        let (s, v) = post(&c, &llmux, search, &[h]).await;
        assert_eq!(s, 403, "{h:?}: {v}");
        assert_eq!(v["error"]["type"], "permission_error");
        assert_eq!(v["error"]["code"], "forbidden");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(names), "{msg}");
        for other in ["anthropic-main", "billing"] {
            if !names.contains(other) {
                assert!(
                    !msg.contains(other),
                    "lists another account or config: {msg}"
                );
            }
        }
    }
    let (s, v) = post(&c, &llmux, search, &[]).await;
    assert_eq!(s, 403, "the default config is outside the scope: {v}");
    assert_eq!(
        m.stats("azure-east").requests,
        calls,
        "nothing outside the scope was called"
    );

    // Inline configs: allowed, but only over the key's accounts.
    let inline_ok =
        json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "openai-main"}]})
            .to_string();
    let inline_bad = json!({"strategy": {"mode": "fallback"}, "targets": [
        {"virtual_key": "openai-main"}, {"virtual_key": "anthropic-main"}]})
    .to_string();
    assert_eq!(
        post(&c, &llmux, search, &[("x-portkey-config", &inline_ok)])
            .await
            .0,
        200
    );
    let (s, v) = post(&c, &llmux, search, &[("x-portkey-config", &inline_bad)]).await;
    assert_eq!(s, 403, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("anthropic-main"));
    // A key without inline configs.
    let (s, v) = post(&c, &llmux, locked, &[("x-portkey-config", &inline_ok)]).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(post(&c, &llmux, locked, &[cfg("search")]).await.0, 200);

    // An inline config naming an unknown account does not list the accounts that exist.
    let unknown =
        json!({"strategy": {"mode": "single"}, "targets": [{"virtual_key": "nope"}]}).to_string();
    let (s, v) = post(&c, &llmux, all, &[("x-portkey-config", &unknown)]).await;
    assert_eq!(s, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    for name in ["openai-main", "azure-east", "anthropic-main"] {
        assert!(!msg.contains(name), "lists {name}: {msg}");
    }

    // The key's metadata lands on the request log, over the client's own `team`.
    let (s, _) = post(
        &c,
        &llmux,
        search,
        &[
            cfg("search"),
            ("x-portkey-trace-id", "tenant-1"),
            ("x-portkey-metadata", r#"{"team":"spoofed","user":"ann"}"#),
        ],
    )
    .await;
    assert_eq!(s, 200);
    let log = get_json(&c, &llmux.admin_url("/admin/requests?metadata.team=search")).await;
    let entry = &log["requests"][0];
    assert_eq!(entry["trace_id"], "tenant-1", "{log}");
    assert_eq!(entry["metadata"]["user"], "ann");
}
