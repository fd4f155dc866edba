//! Rate-limit hints in provider response headers: how long to leave a target alone.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The wait a provider asks for, from the most precise header it sent:
/// `retry-after-ms`, `x-ms-retry-after-ms`, `retry-after` (seconds or HTTP date), then the
/// OpenAI `x-ratelimit-reset-*` durations of an exhausted budget, then Anthropic's
/// `anthropic-ratelimit-*-reset` timestamps.
pub fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.parse::<f64>().ok()) {
            if ms.is_finite() && ms >= 0.0 {
                return Some(Duration::from_secs_f64(ms / 1000.0));
            }
        }
    }
    if let Some(v) = get("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs));
            }
        } else if let Ok(at) = httpdate::parse_http_date(v) {
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
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
            return Some(at.duration_since(SystemTime::now()).unwrap_or_default());
        }
    }
    None
}

/// Parses Go's `time.Duration` text as OpenAI sends it: `1s`, `12ms`, `6m0s`, `1h2m3.5s`.
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
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn map(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
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
    }

    #[test]
    fn precedence() {
        assert_eq!(
            retry_after(&map(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&map(&[("retry-after", "3")])),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            retry_after(&map(&[
                ("x-ratelimit-remaining-tokens", "0"),
                ("x-ratelimit-reset-tokens", "7s"),
                ("x-ratelimit-reset-requests", "20s"),
            ])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(&map(&[])), None);
        assert_eq!(retry_after(&map(&[("retry-after", "garbage")])), None);
    }
}
