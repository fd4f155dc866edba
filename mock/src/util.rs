//! Small self-contained helpers with no HTTP knowledge: a base64 encoder,
//! deterministic embedding vectors, token/word estimates, text splitting and
//! RFC 3339 / unix time formatting.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard (RFC 4648, padded) base64.
pub fn base64_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            B64[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            B64[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Number of dimensions of every mock embedding: enough that unrelated texts are nearly
/// orthogonal (random cosines around 0 ± 0.13).
pub const EMBEDDING_DIMS: usize = 64;

/// Words that carry no meaning for the mock's notion of similarity.
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "of", "to", "in", "on", "for", "and", "or", "me",
    "please", "what", "whats", "s", "tell", "do", "does", "you", "i", "can", "could", "which",
];

/// A unit-length vector derived only from `text`, semantic in a simple, deterministic way:
/// the sum of one pseudo-random vector per meaningful word (lowercased, punctuation and
/// stopwords dropped), so texts with the same words in any order and case embed alike, texts
/// sharing most words are close, and unrelated texts are nearly orthogonal. A text with no
/// such word gets a vector of its own bytes.
pub fn embedding_for(text: &str) -> [f32; EMBEDDING_DIMS] {
    let lower = text.to_lowercase();
    let words: Vec<String> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty() && !STOPWORDS.contains(w))
        .map(str::to_owned)
        .collect();
    let mut v = [0f32; EMBEDDING_DIMS];
    if words.is_empty() {
        add_seeded(&mut v, text.as_bytes());
    } else {
        for w in &words {
            add_seeded(&mut v, w.as_bytes());
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v.iter_mut() {
            *x /= norm;
        }
    }
    v
}

/// Adds the unit vector seeded by `bytes` (FNV-1a seed + splitmix64) to `v`.
fn add_seeded(v: &mut [f32; EMBEDDING_DIMS], bytes: &[u8]) {
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        seed ^= u64::from(*b);
        seed = seed.wrapping_mul(0x0100_0000_01b3);
    }
    let mut w = [0f32; EMBEDDING_DIMS];
    for x in w.iter_mut() {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // 24 random bits -> [-1, 1)
        *x = ((z >> 40) as f32 / (1u64 << 23) as f32) - 1.0;
    }
    let norm = w.iter().map(|x| x * x).sum::<f32>().sqrt();
    for (a, b) in v.iter_mut().zip(w) {
        *a += b / norm;
    }
}

/// Little-endian f32 bytes, base64-encoded (OpenAI `encoding_format: "base64"`).
pub fn embedding_base64(v: &[f32]) -> String {
    let mut bytes = Vec::with_capacity(v.len() * 4);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    base64_encode(&bytes)
}

/// The mock's prompt-token estimate: characters / 4 + 1.
pub fn prompt_tokens(chars: usize) -> u64 {
    (chars / 4 + 1) as u64
}

/// Completion tokens are whitespace-separated words.
pub fn word_count(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// The prefix of `s` holding its first `n` words (original spacing kept).
pub fn truncate_words(s: &str, n: u64) -> &str {
    if n == 0 {
        return "";
    }
    let mut words = 0u64;
    let mut in_word = false;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if in_word {
                in_word = false;
                if words == n {
                    return &s[..i];
                }
            }
        } else if !in_word {
            in_word = true;
            words += 1;
        }
    }
    s
}

/// Splits `s` into exactly `n` (>= 1) consecutive pieces of about equal
/// character count; pieces may be empty when `s` has fewer than `n` chars.
pub fn split_even(s: &str, n: usize) -> Vec<&str> {
    let n = n.max(1);
    let bounds: Vec<usize> = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()))
        .collect();
    let chars = bounds.len() - 1;
    (0..n)
        .map(|i| &s[bounds[i * chars / n]..bounds[(i + 1) * chars / n]])
        .collect()
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a unix timestamp (UTC).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors() {
        let a = embedding_for("hello");
        assert_eq!(a, embedding_for("hello"));
        assert_ne!(a, embedding_for("hellp"));
        let cos = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        let q = embedding_for("What is the capital of France?");
        assert!(cos(&q, &embedding_for("capital of france, please")) > 0.999);
        assert!(cos(&q, &embedding_for("Tell me France's capital city")) > 0.75);
        assert!(cos(&q, &embedding_for("How tall is Mount Everest?")) < 0.6);
        let n: f32 = a.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-4);
    }

    #[test]
    fn words() {
        assert_eq!(word_count("  a bb  c "), 3);
        assert_eq!(truncate_words("a bb  c d", 2), "a bb");
        assert_eq!(truncate_words("a bb", 5), "a bb");
        assert_eq!(truncate_words(" a", 1), " a");
        assert_eq!(truncate_words("a", 0), "");
    }

    #[test]
    fn split() {
        assert_eq!(split_even("abcdefg", 3).concat(), "abcdefg");
        assert_eq!(split_even("abcdefg", 3).len(), 3);
        assert_eq!(split_even("ab", 4), vec!["", "a", "", "b"]);
        assert_eq!(split_even("héllo", 2).concat(), "héllo");
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 3661), "2000-02-29T01:01:01Z");
    }
}
