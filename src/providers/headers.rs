//! Rate-limit hints in provider response headers: how long to leave a target alone.
//!
//! Every hint is hostile input: numbers may be absurd (`1e20`, `99999999999999999999h`), dates
//! may lie in the year 9999, values may be negative, `NaN` or `inf`. Parsing saturates and the
//! result is always capped, so no later `Instant + wait` or `Duration` arithmetic can overflow;
//! a value that cannot be read as a non-negative finite number is ignored, as if not sent.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// No hint is ever taken beyond this, whatever a target's `max_retry_after_ms` says: the
/// request path adds waits to `Instant`s, which must not overflow.
pub const HARD_CAP: Duration = Duration::from_secs(24 * 3600);

/// The wait a provider asks for, from the most precise header it sent:
/// `retry-after-ms`, `x-ms-retry-after-ms`, `retry-after` (seconds or HTTP date), then the
/// OpenAI `x-ratelimit-reset-*` durations of an exhausted budget, then Anthropic's
/// `anthropic-ratelimit-*-reset` timestamps. The result never exceeds `cap` (nor
/// [`HARD_CAP`]); `None` when no header holds a usable hint.
pub fn retry_after(h: &HeaderMap, cap: Duration) -> Option<Duration> {
    let cap = cap.min(HARD_CAP);
    hint(h).map(|d| d.min(cap))
}

/// The uncapped hint; every path here saturates instead of overflowing.
fn hint(h: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(d) = get(name).and_then(|v| seconds(v, 1e-3)) {
            return Some(d);
        }
    }
    if let Some(v) = get("retry-after") {
        if let Some(d) = seconds(v, 1.0) {
            return Some(d);
        }
        if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(until(at));
        }
    }
    // OpenAI: the reset of whichever budget is exhausted; if neither says so, the longer one.
    let mut best: Option<Duration> = None;
    for kind in ["requests", "tokens"] {
        let Some(reset) = get(&format!("x-ratelimit-reset-{kind}")).and_then(parse_go_duration)
        else {
            continue;
        };
        if get(&format!("x-ratelimit-remaining-{kind}")) == Some("0") {
            return Some(reset);
        }
        best = best.max(Some(reset));
    }
    if best.is_some() {
        return best;
    }
    for kind in ["requests", "tokens", "input-tokens", "output-tokens"] {
        if get(&format!("anthropic-ratelimit-{kind}-remaining")) != Some("0") {
            continue;
        }
        if let Some(at) = get(&format!("anthropic-ratelimit-{kind}-reset"))
            .and_then(|v| humantime::parse_rfc3339_weak(v).ok())
        {
            return Some(until(at));
        }
    }
    None
}

/// A decimal number of `unit` seconds; `None` unless it is finite and >= 0. Saturates at
/// [`Duration::MAX`] (the caller caps).
fn seconds(v: &str, unit: f64) -> Option<Duration> {
    let n: f64 = v.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    Some(saturating_secs(n * unit))
}

/// `secs` (finite or `+inf`, >= 0) as a `Duration`, saturating instead of panicking.
fn saturating_secs(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// Time from now until `at`; zero for the past.
fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Parses Go's `time.Duration` text as OpenAI sends it: `1s`, `12ms`, `6m0s`, `1h2m3.5s`.
/// Huge values saturate at [`Duration::MAX`]; anything else malformed is `None`.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        // Digits and dots only: never negative or NaN, at worst +inf for a very long number.
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_end..];
    }
    Some(saturating_secs(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    const CAP: Duration = Duration::from_secs(120);

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ra(pairs: &[(&'static str, &str)]) -> Option<Duration> {
        retry_after(&map(pairs), CAP)
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_go_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(
            parse_go_duration("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("-1s"), None);
        assert_eq!(parse_go_duration("1.2.3s"), None);
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(parse_go_duration("NaNs"), None);
        assert_eq!(parse_go_duration("infs"), None);
        // Absurd but well-formed: saturates instead of panicking.
        assert_eq!(
            parse_go_duration("99999999999999999999h"),
            Some(Duration::MAX)
        );
        let digits = "9".repeat(400) + "h";
        assert_eq!(parse_go_duration(&digits), Some(Duration::MAX));
    }

    #[test]
    fn precedence() {
        assert_eq!(
            ra(&[("retry-after-ms", "250"), ("retry-after", "9")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(ra(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            ra(&[("x-ms-retry-after-ms", "1500")]),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            ra(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "7s"),
                ("x-ratelimit-reset-requests", "20s"),
            ]),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            ra(&[
                ("x-ratelimit-reset-tokens", "7s"),
                ("x-ratelimit-reset-requests", "20s"),
            ]),
            Some(Duration::from_secs(20))
        );
        assert_eq!(ra(&[]), None);
        assert_eq!(ra(&[("retry-after", "garbage")]), None);
    }

    #[test]
    fn garbage_in_one_header_falls_through_to_the_next() {
        assert_eq!(
            ra(&[("retry-after-ms", "NaN"), ("retry-after", "4")]),
            Some(Duration::from_secs(4))
        );
        assert_eq!(
            ra(&[("retry-after", "-4"), ("x-ratelimit-reset-requests", "2s")]),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn absurd_values_are_capped_never_panic() {
        let capped = Some(CAP);
        for (name, value) in [
            ("retry-after", "1e20"),
            ("retry-after", "1e19"),
            ("retry-after", "1e308"),
            ("retry-after", "18446744073709551616"),
            ("retry-after", "1000000000000"),
            ("retry-after", "99999999999999999999999999999999999999"),
            ("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"),
            ("retry-after-ms", "1e30"),
            ("retry-after-ms", "1.7976931348623157e308"),
            ("x-ms-retry-after-ms", "1e300"),
            ("x-ratelimit-reset-requests", "99999999999999999999h"),
        ] {
            assert_eq!(ra(&[(name, value)]), capped, "{name}: {value}");
        }
        assert_eq!(
            ra(&[
                ("anthropic-ratelimit-requests-remaining", "0"),
                ("anthropic-ratelimit-requests-reset", "9999-12-31T23:59:59Z"),
            ]),
            capped
        );
        assert_eq!(
            ra(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", &("9".repeat(500) + "h")),
            ]),
            capped
        );
    }

    #[test]
    fn unusable_values_are_ignored() {
        for (name, value) in [
            ("retry-after", "-5"),
            ("retry-after", "-1e20"),
            ("retry-after", "NaN"),
            ("retry-after", "nan"),
            ("retry-after", "inf"),
            ("retry-after", "-inf"),
            ("retry-after", "infinity"),
            ("retry-after", ""),
            ("retry-after", "5 seconds"),
            ("retry-after", "0x10"),
            ("retry-after", "Fri, 32 Dec 2025 99:00:00 GMT"),
            ("retry-after-ms", "-1"),
            ("retry-after-ms", "inf"),
            ("x-ms-retry-after-ms", "NaN"),
            ("x-ratelimit-reset-requests", "-3s"),
            ("x-ratelimit-reset-requests", "3"),
            ("x-ratelimit-reset-requests", "h"),
            // `e` is not a Go duration unit.
            ("x-ratelimit-reset-tokens", "1e20s"),
        ] {
            assert_eq!(ra(&[(name, value)]), None, "{name}: {value}");
        }
        assert_eq!(
            ra(&[
                ("anthropic-ratelimit-tokens-remaining", "0"),
                ("anthropic-ratelimit-tokens-reset", "tomorrow"),
            ]),
            None
        );
        // Not a header value at all (non-ASCII bytes).
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        assert_eq!(retry_after(&h, CAP), None);
    }

    #[test]
    fn past_dates_mean_now() {
        assert_eq!(
            ra(&[("retry-after", "Thu, 01 Jan 1970 00:00:00 GMT")]),
            Some(Duration::ZERO)
        );
        assert_eq!(
            ra(&[
                ("anthropic-ratelimit-output-tokens-remaining", "0"),
                (
                    "anthropic-ratelimit-output-tokens-reset",
                    "2001-01-01T00:00:00Z"
                ),
            ]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn cap_is_the_smaller_of_the_target_and_hard_caps() {
        let h = map(&[("retry-after", "1e20")]);
        assert_eq!(
            retry_after(&h, Duration::from_millis(1)),
            Some(Duration::from_millis(1))
        );
        assert_eq!(retry_after(&h, Duration::MAX), Some(HARD_CAP));
        assert_eq!(retry_after(&h, Duration::ZERO), Some(Duration::ZERO));
        // Every result can be added to an Instant.
        let now = std::time::Instant::now();
        let _ = now + retry_after(&h, Duration::MAX).unwrap();
    }
}
