//! Test harness: a real `llmux` process on loopback with a generated config, and in-process
//! mock providers (the `llmux-mock` crate, `mock/`) that speak each provider's wire format.
// `allow`, not `expect`: each test crate includes this module and uses a different part of it,
// so in some crates nothing is dead and an `expect` would be unfulfilled.
#![allow(
    dead_code,
    unused_imports,
    reason = "shared by every test crate; each uses only part of it"
)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use llmux_mock::{Behavior, FailMode, MockServer, StreamFailMode};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn mock() -> MockServer {
    MockServer::start("127.0.0.1:0", Behavior::default()).expect("mock starts")
}

pub struct Llmux {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    log_path: PathBuf,
}

impl Llmux {
    /// Starts llmux with `body` appended to a `[server]`/`[admin]` header on fresh ports.
    /// `server_extra` goes into the `[server]` table.
    pub fn start(body: &str) -> Llmux {
        Llmux::start_with(body, "", &[])
    }

    pub fn start_with(body: &str, server_extra: &str, env: &[(&str, &str)]) -> Llmux {
        Llmux::start_with_files(body, server_extra, env, &[], "")
    }

    /// Also writes `files` next to the config and adds `admin_extra` to `[admin]`.
    pub fn start_with_files(
        body: &str,
        server_extra: &str,
        env: &[(&str, &str)],
        files: &[(&str, &str)],
        admin_extra: &str,
    ) -> Llmux {
        let mut dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        // Two ports chosen while both are held (so they differ), then released for llmux. Another
        // process may still take one before llmux binds it: then llmux exits at once and the
        // start is retried on fresh ports.
        let mut tries = 0;
        loop {
            tries += 1;
            let (a, b) = (
                TcpListener::bind("127.0.0.1:0").unwrap(),
                TcpListener::bind("127.0.0.1:0").unwrap(),
            );
            let (addr, admin) = (a.local_addr().unwrap(), b.local_addr().unwrap());
            drop((a, b));
            let config = format!(
                "[server]\nlisten = \"{addr}\"\nworkers = 2\n{server_extra}\n\n[admin]\nlisten = \"{admin}\"\n{admin_extra}\n\n{body}"
            );
            let config_path = dir.path().join("config.toml");
            std::fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("llmux.log");
            let log = std::fs::File::create(&log_path).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_llmux"));
            cmd.arg("--config")
                .arg(&config_path)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn llmux");
            let mut l = Llmux {
                child: Some(child),
                addr,
                admin,
                dir,
                config_path,
                log_path,
            };
            match l.wait_ready() {
                Ok(()) => return l,
                Err(logs) if tries < 5 && logs.contains("in use") => {
                    // Keep the directory (and its files) for the next try.
                    dir = std::mem::replace(&mut l.dir, tempfile::tempdir().unwrap());
                }
                Err(logs) => panic!("llmux did not start:\n{logs}"),
            }
        }
    }

    /// Waits until both listeners answer; the logs if llmux exited or never listened.
    fn wait_ready(&mut self) -> Result<(), String> {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(20) {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("llmux exited early ({status}):\n{}", self.logs()));
            }
            if TcpStream::connect(self.addr).is_ok() && TcpStream::connect(self.admin).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("llmux did not start listening:\n{}", self.logs()))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits for the process to exit by itself; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn rewrite_config(&self, body: &str) {
        let old = std::fs::read_to_string(&self.config_path).unwrap();
        let head_end = old.find("\n\n[admin]").unwrap();
        let admin_end = old[head_end + 2..].find("\n\n").unwrap() + head_end + 2;
        let new = format!("{}\n\n{body}", &old[..admin_end]);
        std::fs::write(&self.config_path, new).unwrap();
    }
}

impl Drop for Llmux {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `[virtual_keys]` for three accounts of the mock: `openai-main`, `azure-east` (deployment
/// `gpt-35-turbo`) and `anthropic-main`, each with a test key.
pub fn provider_keys(m: &MockServer) -> String {
    format!(
        r#"
[virtual_keys.openai-main]
provider = "openai"
base_url = "{o}/v1"
api_key = "sk-test-openai-000000"

[virtual_keys.azure-east]
provider = "azure-openai"
base_url = "{a}"
deployment = "gpt-35-turbo"
api_version = "2024-02-01"
api_key = "azure-test-key-000000"

[virtual_keys.anthropic-main]
provider = "anthropic"
base_url = "{c}"
api_key = "anthropic-test-key-000000"
"#,
        o = m.url("openai-main"),
        a = m.url("azure-east"),
        c = m.url("anthropic-main"),
    )
}

/// The Python with the SDKs the tests drive (`.venv`, made by `make test`; or `LLMUX_PYTHON`).
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("LLMUX_PYTHON") {
        return p.into();
    }
    let venv = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python"));
    assert!(
        venv.exists(),
        "{} missing: run `make test` (it creates the venv with the openai SDK) or set LLMUX_PYTHON",
        venv.display()
    );
    venv
}

/// Runs a client script (`tests/<script>`) against llmux with `program` (python or node); it
/// must exit 0 and print "N passed, 0 failed". Returns its stdout.
pub fn run_client(program: &std::path::Path, script: &str, llmux: &Llmux, args: &[&str]) -> String {
    let out = Command::new(program)
        .arg(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests")
                .join(script),
        )
        .arg(llmux.url("/v1"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} cannot run: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && stdout.contains("passed, 0 failed"),
        "{script} failed:\n{stdout}\n{}\nllmux log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        llmux.logs()
    );
    stdout
}

/// Waits (up to 5 s) until `llmux` reports its cluster connected to Redis.
pub async fn wait_cluster_connected(c: &reqwest::Client, llmux: &Llmux) {
    for _ in 0..100 {
        if get_json(c, &llmux.admin_url("/admin/targets")).await["cluster"]["connected"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica never connected to Redis");
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

pub fn chat_body(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "Say hi"}]})
}

/// Sends `n` chat requests with at most `concurrency` in flight; returns (status, headers, body).
pub async fn fire(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    concurrency: usize,
    headers: &[(&str, &str)],
) -> Vec<(u16, reqwest::header::HeaderMap, String)> {
    use futures_util::StreamExt;
    let body = chat_body("gpt-4o-mini");
    futures_util::stream::iter(0..n)
        .map(|_| {
            let mut req = client.post(url).json(&body);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            async move {
                let resp = req.send().await.expect("request completes");
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let text = resp.text().await.unwrap_or_default();
                (status, headers, text)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

pub fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// A real `redis-server` on a free loopback port, without persistence; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not installed: run `make test` (it installs Debian's redis-server) or apt-get install redis-server");
        let t0 = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child: Some(child),
            port,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// GETs `url` and returns its body as text (admin pages, metrics).
pub async fn get_text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.unwrap().text().await.unwrap()
}

/// GETs `url` and parses its JSON body (admin endpoints).
pub async fn get_json(c: &reqwest::Client, url: &str) -> serde_json::Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

/// The range a Binomial(`n`, `p`) count falls in except with probability < 10⁻⁶ (each tail
/// < 5·10⁻⁷), computed exactly from the distribution: statistical assertions over the daemon
/// use it so that they cannot fail by chance more than once in a million runs.
pub fn binomial_range(n: u64, p: f64) -> (u64, u64) {
    let ln_pmf = |k: u64| {
        let lgamma = |x: f64| {
            // Stirling series; exact enough for tails of 1e-7 (x >= 1 after the shift).
            let x = x + 1.0;
            (x - 0.5) * x.ln() - x + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * x)
                - 1.0 / (360.0 * x.powi(3))
        };
        let (k, nf) = (k as f64, n as f64);
        lgamma(nf) - lgamma(k) - lgamma(nf - k) + k * p.ln() + (nf - k) * (1.0 - p).ln()
    };
    let tail = 5e-7;
    let (mut lo, mut acc) = (0u64, 0.0);
    while lo < n {
        acc += ln_pmf(lo).exp();
        if acc >= tail {
            break;
        }
        lo += 1;
    }
    let (mut hi, mut acc) = (n, 0.0);
    while hi > 0 {
        acc += ln_pmf(hi).exp();
        if acc >= tail {
            break;
        }
        hi -= 1;
    }
    (lo, hi)
}

/// Asserts that `count` of `n` is a plausible Binomial(`n`, `p`) draw (see [`binomial_range`]).
pub fn assert_share(count: u64, n: u64, p: f64, what: &str) {
    let (lo, hi) = binomial_range(n, p);
    assert!(
        (lo..=hi).contains(&count),
        "{what}: {count} of {n}, expected {lo}..={hi} for p = {p}"
    );
}
