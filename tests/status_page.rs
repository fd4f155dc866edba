//! The status page (`GET /ui` on the admin listener) in a real headless Chromium, driven by
//! `tests/ui/status_page.mjs` (playwright-core): a real llmux with a mock provider, a 90/10
//! canary and a fallback pair, live traffic with trace ids, one target made to fail while the
//! page is open. Needs Node.js, `tests/ui/node_modules` and Chromium: `make test` installs them.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "ui-test-admin-token-7f3c";
const TOKEN_ENV: &str = "LLMUX_UI_TEST_ADMIN_TOKEN";
/// Provider keys in the config: the page must never show them.
const SECRETS: [&str; 4] = [
    "sk-ui-stable-secret-0001",
    "sk-ui-canary-secret-0002",
    "azure-ui-secret-0003",
    "anthropic-ui-secret-0004",
];
const BACKUP_MODEL: &str = "claude-3-5-haiku-20241022";
/// Browser launch, page checks and the failure phase together.
const NODE_TIMEOUT: Duration = Duration::from_secs(120);
const READY_TIMEOUT: Duration = Duration::from_secs(75);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails (never skips) when the browser toolchain is missing, saying how to get it.
fn preflight() {
    let mut missing = Vec::new();
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        missing.push("Node.js (`node` on PATH; apt-get install -y nodejs npm)".to_owned());
    }
    if !root()
        .join("tests/ui/node_modules/playwright-core/package.json")
        .is_file()
    {
        missing.push("tests/ui/node_modules (npm ci --prefix tests/ui)".to_owned());
    }
    let chromium = chromium();
    if !chromium.is_file() {
        missing.push(format!(
            "Chromium at {} (apt-get install -y chromium, or set CHROMIUM_PATH)",
            chromium.display()
        ));
    }
    assert!(
        missing.is_empty(),
        "the status page test needs a browser toolchain that is missing: {}.\n\
         Run `make test` (it runs `npm ci --prefix tests/ui`); Chromium is Debian's package: \
         `apt-get install -y chromium` (CI installs it).",
        missing.join("; ")
    );
}

fn config(m: &MockServer) -> String {
    format!(
        r#"
[virtual_keys.openai-stable]
provider = "openai"
base_url = "{stable}/v1"
api_key = "{k0}"
rpm = 600
tpm = 200000

[virtual_keys.openai-canary]
provider = "openai"
base_url = "{canary}/v1"
api_key = "{k1}"

[virtual_keys.azure-primary]
provider = "azure-openai"
base_url = "{azure}"
deployment = "gpt-4o-mini"
api_version = "2024-02-01"
api_key = "{k2}"
failure_threshold = 2
cooldown_ms = 300000

[virtual_keys.anthropic-backup]
provider = "anthropic"
base_url = "{anthropic}"
api_key = "{k3}"

# 90/10 canary.
[configs.canary]
strategy = {{ mode = "loadbalance" }}
targets = [
  {{ virtual_key = "openai-stable", weight = 0.9 }},
  {{ virtual_key = "openai-canary", weight = 0.1 }},
]

# Fallback pair.
[configs.main]
strategy = {{ mode = "fallback" }}
targets = [
  {{ virtual_key = "azure-primary" }},
  {{ virtual_key = "anthropic-backup", override_params = {{ model = "{BACKUP_MODEL}", max_tokens = 256 }} }},
]

# Conditional: paying users to the stable account, everyone else to the backup.
[configs.tiered]
strategy = {{ mode = "conditional", default = "cheap", conditions = [ {{ query = {{ "metadata.plan" = "paid" }}, then = "smart" }} ] }}
targets = [
  {{ name = "smart", virtual_key = "openai-stable" }},
  {{ name = "cheap", virtual_key = "anthropic-backup" }},
]

# Cached: the summary shows the cache's hit rate.
[configs.cached]
cache = "simple"
strategy = {{ mode = "single" }}
targets = [ {{ virtual_key = "openai-stable" }} ]

[pricing."gpt-4o-mini"]
input_per_mtok = 0.15
output_per_mtok = 0.6

[pricing."claude-3-5-haiku"]
input_per_mtok = 0.8
output_per_mtok = 4.0
"#,
        stable = m.url("openai-stable"),
        canary = m.url("openai-canary"),
        azure = m.url("azure-primary"),
        anthropic = m.url("anthropic-backup"),
        k0 = SECRETS[0],
        k1 = SECRETS[1],
        k2 = SECRETS[2],
        k3 = SECRETS[3],
    )
}

/// One chat request with a trace id (and `x-portkey-metadata` when given); returns (status,
/// x-llmux-attempts).
async fn one(
    c: &reqwest::Client,
    url: &str,
    route: (&str, &str),
    trace_id: &str,
    metadata: Option<&str>,
) -> (u16, String) {
    let mut req = c
        .post(url)
        .header(route.0, route.1)
        .header("x-portkey-trace-id", trace_id);
    if let Some(m) = metadata {
        req = req.header("x-portkey-metadata", m);
    }
    let resp = req
        .json(&chat_body("gpt-4o-mini"))
        .send()
        .await
        .expect("request completes");
    let status = resp.status().as_u16();
    let attempts = header(resp.headers(), "x-llmux-attempts").to_owned();
    let _ = resp.bytes().await;
    (status, attempts)
}

/// The node process; killed (SIGTERM so that playwright closes Chromium, then SIGKILL) unless
/// it exited by itself.
struct Node {
    child: Child,
    lines: mpsc::Receiver<String>,
    output: Arc<Mutex<String>>,
}

impl Node {
    fn spawn(admin_url: &str, shot: &Path, expectations: &Value) -> Node {
        let mut child = Command::new("node")
            .current_dir(root())
            .arg("tests/ui/status_page.mjs")
            .arg(admin_url)
            .arg(shot)
            .arg(expectations.to_string())
            .env("CHROMIUM_PATH", chromium())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node");
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let out = output.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                out.lock().unwrap().push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut stderr = child.stderr.take().unwrap();
        let err = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                eprint!("{text}");
                err.lock().unwrap().push_str(&text);
            }
        });
        Node {
            child,
            lines,
            output,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits for a line on stdout; None if the process ended or the time ran out.
    fn wait_line(&self, want: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.trim() == want => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            if self.wait_exit(Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

#[test]
fn status_page_shows_health_canary_shares_and_attempt_paths() {
    preflight();
    let m = mock();
    m.set_behavior(
        "*",
        Behavior {
            latency_ms: 8,
            ..Default::default()
        },
    );
    let llmux = Llmux::start_with_files(
        &config(&m),
        "default_config = \"canary\"",
        &[(TOKEN_ENV, ADMIN_TOKEN)],
        &[],
        &format!("token_env = \"{TOKEN_ENV}\""),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let c = client();
    let url = llmux.url("/v1/chat/completions");

    // Traffic before the page opens: the canary (counted per leaf) and the healthy fallback pair.
    let canary = rt.block_on(fire(&c, &url, 200, 8, &[("x-portkey-config", "canary")]));
    assert!(canary.iter().all(|r| r.0 == 200), "canary traffic succeeds");
    let mut served: BTreeMap<String, u64> = BTreeMap::new();
    for (_, h, _) in &canary {
        *served
            .entry(header(h, "x-portkey-last-used-option-index").to_owned())
            .or_default() += 1;
    }
    let main = rt.block_on(fire(&c, &url, 20, 4, &[("x-portkey-config", "main")]));
    assert!(main.iter().all(|r| r.0 == 200), "main traffic succeeds");
    for i in 0..3 {
        let (st, _) = rt.block_on(one(
            &c,
            &url,
            ("x-portkey-config", "main"),
            &format!("ui-ok-{i}"),
            None,
        ));
        assert_eq!(st, 200);
    }

    // One miss and one hit: the summary reads 50 % hits of 2.
    for i in 0..2 {
        let (st, _) = rt.block_on(one(
            &c,
            &url,
            ("x-portkey-config", "cached"),
            &format!("ui-cache-{i}"),
            None,
        ));
        assert_eq!(st, 200);
    }
    // A Responses API request, shown as such in its trace card.
    let r = rt
        .block_on(async {
            c.post(llmux.url("/v1/responses"))
                .header("x-portkey-config", "main")
                .header("x-portkey-trace-id", "ui-responses-1")
                .json(&json!({"model": "gpt-4o-mini", "input": "hi"}))
                .send()
                .await
        })
        .unwrap();
    assert_eq!(r.status(), 200);
    let expectations = json!({
        "responses_trace": "ui-responses-1",
        "spend_model": "gpt-4o-mini",
        "cache_summary": "50 % hits of 2",
        "token": ADMIN_TOKEN,
        "targets": ["openai-stable", "openai-canary", "azure-primary", "anthropic-backup"],
        "rate_limited": ["openai-stable"],
        "failing_target": "azure-primary",
        "unhealthy_within_ms": 20000,
        "weights": [
            {"config": "canary", "path": "config.targets[0]", "percent": "90 %"},
            {"config": "canary", "path": "config.targets[1]", "percent": "10 %"},
        ],
        "conditions": [
            {"config": "tiered", "path": "config.targets[0]", "when": r#"#1 {"metadata.plan":"paid"}"#},
            {"config": "tiered", "path": "config.targets[1]", "when": "default"},
        ],
        "served": served.iter().map(|(path, n)| json!({"config": "canary", "path": path, "count": n})).collect::<Vec<_>>(),
        "trace": {
            "trace_id": "ui-fail-1",
            "attempts": [
                {"virtual_key": "azure-primary", "path": "config.targets[0]", "status": 500, "answered": false},
                {"virtual_key": "anthropic-backup", "path": "config.targets[1]", "status": 200, "answered": true},
            ],
            "facts": ["gpt-4o-mini", BACKUP_MODEL, "anthropic-backup (config.targets[1])", "team=ui-test"],
        },
        "metadata_filter": {"query": "team=ui-test", "trace_ids": ["ui-fail-1"]},
        "secrets": SECRETS,
        "overall_timeout_ms": NODE_TIMEOUT.as_millis() as u64 - 10_000,
    });
    let artifacts = root().join("target/ui-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("status_page.png");
    let started = Instant::now();
    let mut node = Node::spawn(&llmux.admin_url(""), &shot, &expectations);
    assert!(
        node.wait_line("READY", READY_TIMEOUT),
        "the browser script did not get the page ready within {READY_TIMEOUT:?}:\n{}",
        node.output()
    );

    // With the page open: azure-primary fails with 500. The first request falls back to the
    // backup; a direct one fails outright and opens the circuit (failure_threshold = 2); later
    // requests skip the primary.
    m.set_behavior(
        "azure-primary",
        Behavior {
            latency_ms: 8,
            always_status: Some(500),
            ..Default::default()
        },
    );
    let routed = ("x-portkey-config", "main");
    let (st, attempts) = rt.block_on(one(
        &c,
        &url,
        routed,
        "ui-fail-1",
        Some(r#"{"team":"ui-test"}"#),
    ));
    assert_eq!((st, attempts.as_str()), (200, "2"), "ui-fail-1 falls back");
    let direct = ("x-portkey-virtual-key", "azure-primary");
    let (st, _) = rt.block_on(one(&c, &url, direct, "ui-direct-1", None));
    assert_eq!(st, 500, "a direct request to the failing target fails");
    for i in 2..=4 {
        let (st, attempts) = rt.block_on(one(&c, &url, routed, &format!("ui-fail-{i}"), None));
        assert_eq!(
            (st, attempts.as_str()),
            (200, "1"),
            "ui-fail-{i} skips the open circuit"
        );
    }
    let status: Value = rt.block_on(async {
        c.get(llmux.admin_url("/admin/targets/azure-primary"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(status["state"], "unhealthy", "the API itself: {status}");

    let left = NODE_TIMEOUT.saturating_sub(started.elapsed());
    let exit = node.wait_exit(left);
    let output = node.output();
    match exit {
        Some(st) if st.success() => {}
        Some(st) => panic!(
            "the status page checks failed ({st}); screenshots in {}:\n{output}\nllmux log:\n{}",
            artifacts.display(),
            llmux.logs()
        ),
        None => panic!("the browser script did not finish within {NODE_TIMEOUT:?}:\n{output}"),
    }
    for name in ["status_page.png", "status_page-phone.png"] {
        assert!(artifacts.join(name).is_file(), "{name} was not written");
    }
}
