//! A Vertex target's OAuth2 access token: the JWT-bearer exchange with the service account's
//! `token_uri` ([`fetch`]) and the per-target cache in front of it ([`TokenSource`]).
//!
//! The cache is owned by the target's [`super::super::Upstream`], so it lives as long as the
//! target actor (a reload with the same key file keeps it). It is awaited by the request task
//! in `proxy::attempt`, never inside an actor. Its rules:
//! - a fresh token is returned without waiting (a mutex held for a copy of an `Arc`);
//! - a token near expiry (5 minutes, or half its life if shorter) is refreshed by exactly one
//!   request while the others keep using it;
//! - without a usable token, one request fetches and every concurrent one waits for that same
//!   fetch and shares its result, success or failure;
//! - a failed fetch is remembered for [`FAILURE_HOLD_MS`], so a broken key or a down token
//!   endpoint costs one token call per second at most, not one per request.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::{root_cause, AttemptError, FailureClass};
use crate::config::gcp::ServiceAccount;
use crate::config::Secret;

/// The OAuth scope every Vertex call needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const GRANT_TYPE: &str = "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer";
/// Google accepts assertions valid for at most an hour.
const ASSERTION_LIFETIME_S: u64 = 3600;
/// How long a failed fetch answers for the token without another call.
pub const FAILURE_HOLD_MS: u64 = 1_000;
/// A token endpoint that takes longer is unreachable for our purposes.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The JWT's claims (RFC 7523 with Google's `scope`).
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    pub fn new(sa: &ServiceAccount, now_s: u64) -> Claims {
        Claims {
            iss: sa.client_email.clone(),
            scope: SCOPE.to_owned(),
            aud: sa.token_uri.clone(),
            iat: now_s,
            exp: now_s + ASSERTION_LIFETIME_S,
        }
    }
}

/// The signed assertion: RS256, `kid` = the key's id.
pub fn assertion(sa: &ServiceAccount, now_s: u64) -> Result<String, String> {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(sa.private_key_id.clone());
    jsonwebtoken::encode(&header, &Claims::new(sa, now_s), sa.signing_key())
        .map_err(|e| format!("cannot sign the token request: {e}"))
}

/// What the token endpoint granted.
pub struct Grant {
    pub token: Secret,
    pub expires_in: Duration,
}

/// A usable token and when to stop using it, in the cache's clock (monotonic ms).
struct Token {
    value: Arc<Secret>,
    /// From here on one request refreshes it.
    refresh_at: u64,
    /// From here on it is not used at all.
    expires_at: u64,
}

#[derive(Default)]
struct State {
    token: Option<Token>,
    /// Bumped by every finished fetch: a waiter that sees it change shares that fetch's result.
    generation: u64,
    /// The last fetch's failure and when it happened, while no fetch has succeeded since.
    failure: Option<(u64, AttemptError)>,
}

enum Lookup {
    Fresh(Arc<Secret>),
    /// Still valid, due for a refresh.
    Due(Arc<Secret>),
    /// A recent failure stands.
    Failed(AttemptError),
    Missing(u64),
}

impl State {
    fn lookup(&self, now: u64) -> Lookup {
        match &self.token {
            Some(t) if now < t.refresh_at => Lookup::Fresh(t.value.clone()),
            // A recent failed refresh: keep using the token rather than calling again.
            Some(t) if now < t.expires_at => match &self.failure {
                Some((at, _)) if now < at + FAILURE_HOLD_MS => Lookup::Fresh(t.value.clone()),
                _ => Lookup::Due(t.value.clone()),
            },
            _ => match &self.failure {
                Some((at, e)) if now < at + FAILURE_HOLD_MS => Lookup::Failed(e.clone()),
                _ => Lookup::Missing(self.generation),
            },
        }
    }

    fn store(&mut self, result: &Result<Grant, AttemptError>, now: u64) {
        self.generation += 1;
        match result {
            Ok(g) => {
                let life = g.expires_in.as_millis().min(u64::MAX as u128) as u64;
                self.token = Some(Token {
                    value: Arc::new(g.token.clone()),
                    refresh_at: now.saturating_add(life - (life / 2).min(300_000)),
                    expires_at: now.saturating_add(life - (life / 10).min(10_000)),
                });
                self.failure = None;
            }
            Err(e) => self.failure = Some((now, e.clone())),
        }
    }
}

/// One target's cached access token (see the module doc for the rules).
pub struct TokenSource {
    target: String,
    account: ServiceAccount,
    state: Mutex<State>,
    /// Held by the one fetch in flight.
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(target: &str, account: ServiceAccount) -> TokenSource {
        TokenSource {
            target: target.to_owned(),
            account,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// A valid access token, fetched only when the cache has none fresh enough.
    pub async fn token(&self) -> Result<Arc<Secret>, AttemptError> {
        self.get(crate::clock::now_ms, || fetch(&self.target, &self.account))
            .await
    }

    fn lookup(&self, now: u64) -> Lookup {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lookup(now)
    }

    /// [`TokenSource::token`] with the clock and the fetch injected (tests drive both).
    async fn get<F, Fut>(
        &self,
        now: impl Fn() -> u64,
        fetch: F,
    ) -> Result<Arc<Secret>, AttemptError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Grant, AttemptError>>,
    {
        let seen = match self.lookup(now()) {
            Lookup::Fresh(t) => return Ok(t),
            Lookup::Failed(e) => return Err(e),
            Lookup::Due(old) => {
                // One request refreshes; while it does, the others keep the old token.
                let Ok(_guard) = self.refresh.try_lock() else {
                    return Ok(old);
                };
                return match self.lookup(now()) {
                    Lookup::Fresh(t) => Ok(t),
                    _ => match self.run(&now, fetch).await {
                        Ok(t) => Ok(t),
                        // The old token still works; the failure is held for the next ones.
                        Err(e) => {
                            tracing::warn!(target_name = %self.target, error = %e.message, "vertex token refresh failed; using the current token until it expires");
                            Ok(old)
                        }
                    },
                };
            }
            Lookup::Missing(generation) => generation,
        };
        let _guard = self.refresh.lock().await;
        {
            let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.generation != seen {
                // A fetch finished while this request waited: share its result.
                if let Some((_, e)) = &state.failure {
                    return Err(e.clone());
                }
                if let Some(t) = state.token.as_ref().filter(|t| now() < t.expires_at) {
                    return Ok(t.value.clone());
                }
            }
        }
        self.run(&now, fetch).await
    }

    /// Runs the fetch (the caller holds `refresh`) and records its result.
    async fn run<F, Fut>(
        &self,
        now: &impl Fn() -> u64,
        fetch: F,
    ) -> Result<Arc<Secret>, AttemptError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Grant, AttemptError>>,
    {
        let result = fetch().await;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.store(&result, now());
        match result {
            Ok(_) => Ok(state
                .token
                .as_ref()
                .map(|t| t.value.clone())
                .unwrap_or_else(|| Arc::new(Secret::new("")))),
            Err(e) => Err(e),
        }
    }
}

/// The token endpoint refused the credentials: the account's fault, not the request's, so it
/// counts against the target's health (class `Server`) while the client sees a 401.
fn rejected(target: &str, detail: &str) -> AttemptError {
    let mut e = AttemptError::new(
        401,
        FailureClass::Server,
        "authentication_error",
        format!(
            "virtual key `{target}` (vertex): the OAuth token endpoint rejected the service \
             account's credentials ({detail}); check its key file (revoked key, disabled \
             account, wrong token_uri)"
        ),
    );
    e.code = Some("vertex_credentials_rejected".into());
    e
}

/// The token endpoint could not be reached or answered nonsense: 503, counted like a 5xx.
fn unavailable(target: &str, detail: &str) -> AttemptError {
    let mut e = AttemptError::new(
        503,
        FailureClass::Connection,
        "server_error",
        format!("virtual key `{target}` (vertex): no OAuth access token: {detail}"),
    );
    e.code = Some("vertex_token_unavailable".into());
    e
}

/// Exchanges a fresh signed assertion for an access token at the account's `token_uri`.
pub async fn fetch(target: &str, sa: &ServiceAccount) -> Result<Grant, AttemptError> {
    let jwt = assertion(sa, crate::clock::unix_ms() / 1000).map_err(|m| unavailable(target, &m))?;
    let resp = super::super::client()
        .post(&sa.token_uri)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(format!("grant_type={GRANT_TYPE}&assertion={jwt}"))
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            unavailable(
                target,
                &format!("cannot reach the token endpoint: {}", root_cause(&e)),
            )
        })?;
    let status = resp.status().as_u16();
    let body = super::super::read_capped(resp, 16 * 1024)
        .await
        .unwrap_or_default();
    grant_of(target, status, &body)
}

/// The token endpoint's answer as a [`Grant`] or the attempt's error. Only Google's short
/// `error`/`error_description` are echoed (scrubbed and cut), never the assertion.
pub fn grant_of(target: &str, status: u16, body: &[u8]) -> Result<Grant, AttemptError> {
    #[derive(Deserialize)]
    struct Answer {
        access_token: Option<String>,
        expires_in: Option<u64>,
        error: Option<String>,
        error_description: Option<String>,
    }
    let a: Option<Answer> = serde_json::from_slice(body).ok();
    if (200..300).contains(&status) {
        return match a {
            Some(Answer {
                access_token: Some(t),
                expires_in,
                ..
            }) if !t.is_empty() => Ok(Grant {
                token: Secret::new(t),
                expires_in: Duration::from_secs(expires_in.unwrap_or(3600).max(1)),
            }),
            _ => Err(unavailable(
                target,
                "the token endpoint's answer has no access_token",
            )),
        };
    }
    let detail = match a {
        Some(Answer {
            error: Some(e),
            error_description,
            ..
        }) => {
            let d = error_description.map_or(String::new(), |d| format!(": {d}"));
            let mut s = super::super::scrub(&format!("{e}{d}"), None);
            if s.len() > 200 {
                let mut cut = 200;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
            }
            format!("HTTP {status}, {s}")
        }
        _ => format!("HTTP {status}"),
    };
    match status {
        400 | 401 | 403 => Err(rejected(target, &detail)),
        _ => Err(unavailable(
            target,
            &format!("the token endpoint answered {detail}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::path::Path;
    use std::rc::Rc;

    const FIXTURE: &str = include_str!("../../../tests/fixtures/vertex-sa.json");
    const PUBLIC: &str = include_str!("../../../tests/fixtures/vertex-sa.pub.pem");

    fn account() -> ServiceAccount {
        ServiceAccount::parse(FIXTURE, Path::new("sa.json")).unwrap()
    }

    fn grant(token: &str, secs: u64) -> Result<Grant, AttemptError> {
        Ok(Grant {
            token: Secret::new(token),
            expires_in: Duration::from_secs(secs),
        })
    }

    /// Polls a future that must not wait (the cache's own paths): no runtime, no sleeps.
    fn ready<T>(f: impl Future<Output = T>) -> T {
        let waker = futures_util::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the cache waited"),
        }
    }

    #[test]
    fn the_assertion_is_rs256_with_googles_claims() {
        let sa = account();
        let jwt = assertion(&sa, 1_700_000_000).unwrap();
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        assert_eq!(header.kid.as_deref(), Some(sa.private_key_id.as_str()));
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC.as_bytes()).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.validate_exp = false;
        v.set_audience(&["https://oauth2.googleapis.com/token"]);
        let claims = jsonwebtoken::decode::<Claims>(&jwt, &key, &v)
            .unwrap()
            .claims;
        assert_eq!(
            claims,
            Claims {
                iss: "llmux-test@llmux-test.iam.gserviceaccount.com".into(),
                scope: SCOPE.into(),
                aud: "https://oauth2.googleapis.com/token".into(),
                iat: 1_700_000_000,
                exp: 1_700_003_600,
            }
        );
    }

    #[test]
    fn cache_transitions_follow_the_clock() {
        let src = TokenSource::new("vx", account());
        let clock = Rc::new(Cell::new(1_000u64));
        let calls = Cell::new(0);
        let now = || clock.get();
        let get = |result: Result<Grant, AttemptError>| {
            ready(src.get(now, || {
                calls.set(calls.get() + 1);
                std::future::ready(result)
            }))
        };
        // Empty: fetched. An hour's token is fresh for 55 minutes.
        assert_eq!(get(grant("t1", 3600)).unwrap().expose(), "t1");
        clock.set(1_000 + 55 * 60_000 - 1);
        assert_eq!(get(grant("never", 3600)).unwrap().expose(), "t1");
        assert_eq!(calls.get(), 1);
        // Five minutes before expiry: refreshed.
        clock.set(1_000 + 55 * 60_000);
        assert_eq!(get(grant("t2", 3600)).unwrap().expose(), "t2");
        assert_eq!(calls.get(), 2);
        // A failed refresh of a still valid token: the old one is used, and the failure is
        // held, so the next request does not call again at once.
        clock.set(1_000 + 110 * 60_000);
        let fail = || Err(unavailable("vx", "down"));
        assert_eq!(get(fail()).unwrap().expose(), "t2");
        assert_eq!(get(fail()).unwrap().expose(), "t2");
        assert_eq!(calls.get(), 3);
        // Expired, and the endpoint rejects the key: the error, held for a second.
        clock.set(1_000 + 200 * 60_000);
        let e = get(Err(rejected("vx", "HTTP 400, invalid_grant"))).unwrap_err();
        assert_eq!((e.status, e.class), (401, FailureClass::Server));
        assert!(e.message.contains("`vx`"));
        assert_eq!(get(grant("t3", 3600)).unwrap_err().status, 401);
        assert_eq!(calls.get(), 4);
        clock.set(clock.get() + FAILURE_HOLD_MS);
        assert_eq!(get(grant("t3", 3600)).unwrap().expose(), "t3");
        assert_eq!(calls.get(), 5);
        // A short-lived token is refreshed at half its life.
        clock.set(clock.get() + 3_600_000);
        assert_eq!(get(grant("t4", 60)).unwrap().expose(), "t4");
        clock.set(clock.get() + 29_999);
        assert_eq!(get(grant("t5", 60)).unwrap().expose(), "t4");
        clock.set(clock.get() + 1);
        assert_eq!(get(grant("t5", 60)).unwrap().expose(), "t5");
        assert_eq!(calls.get(), 7);
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch() {
        let src = Arc::new(TokenSource::new("vx", account()));
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let (open, gate) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (src, calls, mut gate) = (src.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                src.get(
                    || 5,
                    || async move {
                        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        grant("shared", 3600)
                    },
                )
                .await
            }));
        }
        // Let every task reach the cache before the one fetch answers.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        open.send(true).unwrap();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().expose(), "shared");
        }
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn token_endpoint_answers_map_to_clear_errors() {
        let g = grant_of(
            "vx",
            200,
            br#"{"access_token":"ya29.x","expires_in":1200,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!((g.token.expose(), g.expires_in.as_secs()), ("ya29.x", 1200));
        let e = grant_of(
            "vx",
            400,
            br#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        )
        .err()
        .unwrap();
        assert_eq!((e.status, e.kind.as_str()), (401, "authentication_error"));
        assert!(e.message.contains("Invalid JWT Signature") && e.message.contains("`vx`"));
        let e = grant_of("vx", 500, b"<html>").err().unwrap();
        assert_eq!(e.status, 503);
        assert_eq!(grant_of("vx", 200, b"{}").err().unwrap().status, 503);
    }
}
