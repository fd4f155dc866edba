//! Google Vertex AI: Gemini models at
//! `<account>/v1/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent` /
//! `:streamGenerateContent?alt=sse` (Gemini's wire code, see `gemini.rs`), Anthropic models at
//! `…/publishers/anthropic/models/{m}:rawPredict` / `:streamRawPredict` (Anthropic's wire code
//! with Vertex's body rules: no `model`, `anthropic_version = "vertex-2023-10-16"`), the OAuth2
//! token endpoint `POST <account>/token`, and the bearer check in front of every model call.
//!
//! The token endpoint does what Google's does with a JWT-bearer grant: it verifies the RS256
//! assertion against the public half of the test key pair (`tests/fixtures/vertex-sa.*`, a
//! test-only key that grants nothing anywhere), checks `iss`, `aud` (must name this endpoint),
//! `scope` and a lifetime of at most an hour, and issues an opaque token living
//! `Behavior::token_expires_in_s` (default 3600). Each call counts as `vertex_token` in the
//! account's stats, so tests can assert how often llmux refreshes.

use std::time::{Duration, Instant};

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::HttpResponse;
use dashmap::DashMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{self, Answer, ApiError, Ctx};
use super::{anthropic, gemini, Behavior};

/// The public key of the test service account (`tests/fixtures/vertex-sa.json`).
pub const TEST_PUBLIC_KEY: &str = include_str!("../../tests/fixtures/vertex-sa.pub.pem");
/// The only service account the token endpoint knows.
pub const TEST_CLIENT_EMAIL: &str = "llmux-test@llmux-test.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Access tokens issued, with their expiry. Kept across `/_mock/reset` (a real token outlives
/// any test's reset; llmux would otherwise hold one the mock forgot).
#[derive(Default)]
pub struct Tokens {
    issued: DashMap<String, Instant>,
}

impl Tokens {
    fn issue(&self, seq: u64, ttl: Duration) -> String {
        let token = format!("ya29.mock-{seq}-{:016x}", rand::random::<u64>());
        self.issued.insert(token.clone(), Instant::now() + ttl);
        token
    }

    fn valid(&self, token: &str) -> bool {
        self.issued
            .get(token)
            .is_some_and(|until| Instant::now() < *until)
    }
}

/// What Vertex answers a call without a valid token (Google's error shape whichever publisher).
pub fn check_bearer(tokens: &Tokens, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token {
        Some(t) if tokens.valid(t) => Ok(()),
        Some(_) => Err(ApiError::status(401).message(
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        )),
        None => Err(ApiError::status(401).message(
            "Request is missing required authentication credential. Expected OAuth 2 access \
             token, login cookie or other valid authentication credential.",
        )),
    }
}

fn oauth_error(error: &str, description: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("application/json")
        .body(json!({"error": error, "error_description": description}).to_string())
}

/// `POST <account>/token`: the JWT-bearer grant. `path` is the request's path, which the
/// assertion's `aud` must end with (the full URL is the test's `token_uri`).
pub fn token(
    tokens: &Tokens,
    behavior: &Behavior,
    seq: u64,
    path: &str,
    body: &[u8],
) -> HttpResponse {
    if let Some(status) = behavior.token_status.filter(|s| *s >= 400) {
        return HttpResponse::build(
            actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .content_type("application/json")
        .body(json!({"error": "internal_failure", "error_description": "mock token endpoint failure"}).to_string());
    }
    let form = String::from_utf8_lossy(body);
    let field = |name: &str| {
        form.split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(|v| v.replace("%3A", ":").replace("%3a", ":"))
    };
    if field("grant_type").as_deref() != Some(GRANT_TYPE) {
        return oauth_error("unsupported_grant_type", "Invalid grant_type: ");
    }
    let Some(assertion) = field("assertion") else {
        return oauth_error("invalid_request", "Missing required parameter: assertion");
    };
    #[derive(Deserialize)]
    struct Claims {
        iss: String,
        scope: String,
        aud: String,
        iat: u64,
        exp: u64,
    }
    let header = match jsonwebtoken::decode_header(&assertion) {
        Ok(h) => h,
        Err(_) => return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe."),
    };
    if header.alg != jsonwebtoken::Algorithm::RS256 || header.kid.is_none() {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: the header must name alg RS256 and a kid",
        );
    }
    let key = match jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()) {
        Ok(k) => k,
        Err(_) => return oauth_error("internal_failure", "mock: bad test public key"),
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = match jsonwebtoken::decode::<Claims>(&assertion, &key, &validation) {
        Ok(d) => d.claims,
        Err(e) => {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.",
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
                _ => "Invalid JWT.",
            };
            return oauth_error("invalid_grant", why);
        }
    };
    if claims.iss != TEST_CLIENT_EMAIL {
        return oauth_error("invalid_grant", "Invalid grant: account not found");
    }
    if !claims.aud.ends_with(path) || !claims.aud.starts_with("http") {
        return oauth_error(
            "invalid_grant",
            "Invalid JWT: aud must be the token endpoint",
        );
    }
    if !claims.scope.split(' ').any(|s| s == SCOPE) {
        return oauth_error(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
        );
    }
    if claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
    }
    let ttl = behavior.token_expires_in_s.unwrap_or(3600).max(1);
    let access = tokens.issue(seq, Duration::from_secs(ttl));
    HttpResponse::Ok().content_type("application/json").body(
        json!({"access_token": access, "expires_in": ttl, "token_type": "Bearer"}).to_string(),
    )
}

/// `…/publishers/anthropic/models/{m}:rawPredict` (`stream` false) or `:streamRawPredict`.
pub fn raw_predict(ctx: &Ctx, model: &str, body: &[u8], stream: bool) -> Result<Answer, ApiError> {
    let mut req = wire::parse_object(body)?;
    let Some(obj) = req.as_object_mut() else {
        return Err(ApiError::invalid("the body must be a JSON object"));
    };
    if obj.contains_key("model") {
        return Err(ApiError::invalid(
            "model: Extra inputs are not permitted (Vertex takes the model from the URL)",
        ));
    }
    match obj.remove("anthropic_version") {
        Some(Value::String(v)) if v == "vertex-2023-10-16" => {}
        _ => {
            return Err(ApiError::invalid(
                "anthropic_version: Input should be 'vertex-2023-10-16'",
            ))
        }
    }
    if obj.get("stream").and_then(Value::as_bool).unwrap_or(false) != stream {
        return Err(ApiError::invalid(if stream {
            "streamRawPredict needs \"stream\": true"
        } else {
            "rawPredict cannot stream; use streamRawPredict"
        }));
    }
    obj.insert("model".into(), Value::String(model.to_owned()));
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static("2023-06-01"),
    );
    let body = serde_json::to_vec(&req).unwrap_or_default();
    anthropic::messages(ctx, &headers, &body)
}

/// `…/publishers/google/models/{m}:generateContent` / `:streamGenerateContent`.
pub fn generate(ctx: &Ctx, model: &str, body: &[u8], stream: bool) -> Result<Answer, ApiError> {
    gemini::generate(ctx, model, body, stream)
}
