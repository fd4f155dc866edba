//! Conditions of a `conditional` strategy node, in Portkey's query format: compiled once (a
//! stored config at load, an inline one per request), then evaluated against a request as a
//! pure function. It lives in `config` because compiled queries are part of a compiled tree; the
//! walk (`routing`) evaluates them.
//!
//! A query is an object whose keys are ANDed. A key is `$and` / `$or` (an array of sub-queries)
//! or a field: `metadata.KEY` (the `x-portkey-metadata` header), `params.PATH` (the JSON body;
//! any depth, array items by index, e.g. `params.response_format.type`), or `url.pathname`.
//! A field's value is either a bare value (strict equality) or an object of operators, all of
//! which must hold: `$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte` (numeric: numbers, or strings
//! that read as numbers; a missing or non-numeric field never compares), `$in`, `$nin` (arrays),
//! `$regex` (the `regex` crate, size-limited). Unlike Portkey, keys after an `$and`, `$or` or
//! `$regex` are not ignored, and a numeric comparison with a missing field is false.

use std::borrow::Cow;
use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

/// Longest `$regex` pattern accepted, and the compiled size it may take.
pub const MAX_REGEX_LEN: usize = 1024;
const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// Deepest nesting of `$and`/`$or` accepted.
pub const MAX_DEPTH: usize = 16;

/// A query that did not compile, with the path of the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct QueryError {
    pub path: String,
    pub message: String,
}

/// A compiled query.
#[derive(Debug, Clone)]
pub enum Query {
    All(Vec<Query>),
    Any(Vec<Query>),
    Field { source: Source, ops: Vec<Op> },
}

/// Where a field's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Metadata(String),
    Params(Vec<String>),
    Pathname,
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Value),
    Ne(Value),
    Gt(f64),
    Gte(f64),
    Lt(f64),
    Lte(f64),
    In(Vec<Value>),
    Nin(Vec<Value>),
    Regex(Regex),
}

/// What a query is evaluated against.
pub struct Request<'a> {
    pub metadata: Option<&'a BTreeMap<String, String>>,
    pub params: Option<&'a Map<String, Value>>,
    pub pathname: &'a str,
}

impl Query {
    /// Compiles `v` (found at `path`, for errors).
    pub fn compile(v: &Value, path: &str) -> Result<Query, QueryError> {
        compile(v, path, 0)
    }

    /// Whether the query reads `params.*` (the request body as a map).
    pub fn reads_params(&self) -> bool {
        match self {
            Query::All(qs) | Query::Any(qs) => qs.iter().any(Query::reads_params),
            Query::Field { source, .. } => matches!(source, Source::Params(_)),
        }
    }

    pub fn matches(&self, r: &Request<'_>) -> bool {
        match self {
            Query::All(qs) => qs.iter().all(|q| q.matches(r)),
            Query::Any(qs) => qs.iter().any(|q| q.matches(r)),
            Query::Field { source, ops } => {
                let value: Option<Cow<'_, Value>> = match source {
                    Source::Metadata(k) => r
                        .metadata
                        .and_then(|m| m.get(k))
                        .map(|s| Cow::Owned(Value::String(s.clone()))),
                    Source::Params(path) => {
                        r.params.and_then(|p| lookup(p, path)).map(Cow::Borrowed)
                    }
                    Source::Pathname => Some(Cow::Owned(Value::String(r.pathname.to_owned()))),
                };
                let value = value.as_deref();
                ops.iter().all(|op| op.holds(value))
            }
        }
    }
}

fn lookup<'a>(params: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let mut v = params.get(first)?;
    for seg in rest {
        v = match v {
            Value::Object(m) => m.get(seg)?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// Strict equality as Portkey's `===` on JSON scalars, except that numbers compare by value
/// (`1` equals `1.0`); arrays and objects compare structurally.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A number, or a string that reads as one.
fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

impl Op {
    fn holds(&self, value: Option<&Value>) -> bool {
        let num = || value.and_then(numeric);
        match self {
            Op::Eq(x) => value.is_some_and(|v| same(v, x)),
            Op::Ne(x) => !value.is_some_and(|v| same(v, x)),
            Op::Gt(x) => num().is_some_and(|v| v > *x),
            Op::Gte(x) => num().is_some_and(|v| v >= *x),
            Op::Lt(x) => num().is_some_and(|v| v < *x),
            Op::Lte(x) => num().is_some_and(|v| v <= *x),
            Op::In(xs) => value.is_some_and(|v| xs.iter().any(|x| same(v, x))),
            Op::Nin(xs) => !value.is_some_and(|v| xs.iter().any(|x| same(v, x))),
            Op::Regex(re) => match value {
                Some(Value::String(s)) => re.is_match(s),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => re.is_match(&v.to_string()),
                _ => false,
            },
        }
    }
}

fn err(path: &str, message: impl Into<String>) -> QueryError {
    QueryError {
        path: path.to_owned(),
        message: message.into(),
    }
}

fn compile(v: &Value, path: &str, depth: usize) -> Result<Query, QueryError> {
    if depth > MAX_DEPTH {
        return Err(err(
            path,
            format!("queries nest deeper than {MAX_DEPTH} levels"),
        ));
    }
    let Value::Object(m) = v else {
        return Err(err(path, "a query must be an object"));
    };
    if m.is_empty() {
        return Err(err(
            path,
            "an empty query matches everything: use `default` instead",
        ));
    }
    let mut parts = Vec::with_capacity(m.len());
    for (key, value) in m {
        let at = format!("{path}.{key}");
        parts.push(match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = value else {
                    return Err(err(&at, format!("`{key}` takes an array of queries")));
                };
                if items.is_empty() {
                    return Err(err(&at, format!("`{key}` needs at least one query")));
                }
                let qs = items
                    .iter()
                    .enumerate()
                    .map(|(i, q)| compile(q, &format!("{at}[{i}]"), depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "$and" {
                    Query::All(qs)
                } else {
                    Query::Any(qs)
                }
            }
            k if k.starts_with('$') => {
                return Err(err(
                    &at,
                    format!("unknown operator `{k}` where a field or `$and`/`$or` belongs"),
                ))
            }
            field => Query::Field {
                source: source(field, &at)?,
                ops: ops(value, &at)?,
            },
        });
    }
    Ok(if parts.len() == 1 {
        parts.pop().expect("one part")
    } else {
        Query::All(parts)
    })
}

fn source(field: &str, at: &str) -> Result<Source, QueryError> {
    if field == "url.pathname" {
        return Ok(Source::Pathname);
    }
    if let Some(k) = field.strip_prefix("metadata.").filter(|k| !k.is_empty()) {
        return Ok(Source::Metadata(k.to_owned()));
    }
    if let Some(p) = field.strip_prefix("params.") {
        let segs: Vec<String> = p.split('.').map(str::to_owned).collect();
        if segs.iter().all(|s| !s.is_empty()) {
            return Ok(Source::Params(segs));
        }
    }
    Err(err(
        at,
        format!("unknown field `{field}`: use `metadata.KEY`, `params.PATH` or `url.pathname`"),
    ))
}

fn ops(value: &Value, at: &str) -> Result<Vec<Op>, QueryError> {
    let Value::Object(m) = value else {
        return Ok(vec![Op::Eq(value.clone())]);
    };
    if m.is_empty() {
        return Err(err(at, "an empty operator object"));
    }
    let mut out = Vec::with_capacity(m.len());
    for (op, x) in m {
        let at = format!("{at}.{op}");
        let number = || {
            numeric(x).ok_or_else(|| err(&at, format!("`{op}` compares numbers; {x} is not one")))
        };
        let array = || match x {
            Value::Array(a) => Ok(a.clone()),
            _ => Err(err(&at, format!("`{op}` takes an array"))),
        };
        out.push(match op.as_str() {
            "$eq" => Op::Eq(x.clone()),
            "$ne" => Op::Ne(x.clone()),
            "$gt" => Op::Gt(number()?),
            "$gte" => Op::Gte(number()?),
            "$lt" => Op::Lt(number()?),
            "$lte" => Op::Lte(number()?),
            "$in" => Op::In(array()?),
            "$nin" => Op::Nin(array()?),
            "$regex" => {
                let Value::String(p) = x else {
                    return Err(err(&at, "`$regex` takes a string pattern"));
                };
                if p.len() > MAX_REGEX_LEN {
                    return Err(err(
                        &at,
                        format!("the pattern is over {MAX_REGEX_LEN} bytes"),
                    ));
                }
                let re = regex::RegexBuilder::new(p)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| err(&at, format!("not a valid regex: {e}")))?;
                Op::Regex(re)
            }
            other => {
                return Err(err(
                    &at,
                    format!(
                        "unknown operator `{other}` (use $eq $ne $gt $gte $lt $lte $in $nin $regex)"
                    ),
                ))
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn check(query: Value, metadata: &BTreeMap<String, String>, params: Value) -> bool {
        let q = Query::compile(&query, "q").unwrap();
        let Value::Object(p) = params else { panic!() };
        q.matches(&Request {
            metadata: Some(metadata),
            params: Some(&p),
            pathname: "/v1/chat/completions",
        })
    }

    #[test]
    fn every_operator_and_source() {
        let m = meta(&[("plan", "paid"), ("n", "7"), ("_user", "ann")]);
        let p = json!({"model": "gpt-4o", "temperature": 0.9, "max_tokens": 100,
            "response_format": {"type": "json_object"}, "messages": [{"role": "system"}],
            "stream": false, "tag": null});
        let yes = [
            json!({"metadata.plan": "paid"}),
            json!({"metadata.plan": {"$eq": "paid"}}),
            json!({"metadata.plan": {"$ne": "free"}}),
            json!({"metadata.missing": {"$ne": "x"}}),
            json!({"metadata.n": {"$gt": 6}}),
            json!({"metadata.n": {"$gte": "7", "$lte": 7}}),
            json!({"params.temperature": {"$gt": 0.7, "$lt": 1}}),
            json!({"params.max_tokens": 100.0}),
            json!({"params.model": {"$in": ["gpt-4o", "o1"]}}),
            json!({"params.model": {"$nin": ["o1"]}}),
            json!({"params.missing": {"$nin": ["o1"]}}),
            json!({"params.model": {"$regex": "^gpt-4"}}),
            json!({"params.max_tokens": {"$regex": "^1\\d\\d$"}}),
            json!({"params.response_format.type": "json_object"}),
            json!({"params.messages.0.role": "system"}),
            json!({"params.stream": false}),
            json!({"params.tag": null}),
            json!({"url.pathname": {"$regex": "chat/completions$"}}),
            json!({"$or": [{"params.model": "o1"}, {"params.temperature": {"$gt": 0.7}}]}),
            json!({"$and": [{"metadata.plan": "paid"}, {"metadata._user": "ann"}]}),
            json!({"metadata.plan": "paid", "params.model": "gpt-4o"}),
        ];
        for q in yes {
            assert!(check(q.clone(), &m, p.clone()), "should match: {q}");
        }
        let no = [
            json!({"metadata.plan": "free"}),
            json!({"metadata.missing": "x"}),
            json!({"metadata.n": 7}),
            json!({"metadata.missing": {"$gt": 0}}),
            json!({"metadata.plan": {"$lt": 10}}),
            json!({"params.temperature": {"$gt": 0.9}}),
            json!({"params.model": {"$in": ["o1"]}}),
            json!({"params.model": {"$nin": ["gpt-4o"]}}),
            json!({"params.model": {"$regex": "^o1"}}),
            json!({"params.missing": {"$regex": ".*"}}),
            json!({"params.response_format": "json_object"}),
            json!({"params.messages.5.role": "system"}),
            json!({"params.model.deeper": "x"}),
            json!({"$or": [{"params.model": "o1"}, {"params.temperature": {"$lt": 0.5}}]}),
            json!({"$and": [{"metadata.plan": "paid"}, {"metadata._user": "bob"}]}),
            // Keys after an `$or` still count (Portkey ignores them).
            json!({"$or": [{"metadata.plan": "paid"}], "params.model": "o1"}),
            json!({"params.model": {"$regex": "^gpt", "$eq": "gpt-4"}}),
        ];
        for q in no {
            assert!(!check(q.clone(), &m, p.clone()), "should not match: {q}");
        }
        // No metadata header and no body at all: nothing is there to match.
        let q = Query::compile(&json!({"metadata.plan": {"$ne": "paid"}}), "q").unwrap();
        assert!(q.matches(&Request {
            metadata: None,
            params: None,
            pathname: "/"
        }));
    }

    #[test]
    fn errors_name_the_offending_part() {
        let cases = [
            (json!("paid"), "q", "must be an object"),
            (json!({}), "q", "empty query"),
            (json!({"$xor": []}), "q.$xor", "unknown operator `$xor`"),
            (json!({"$or": {}}), "q.$or", "array of queries"),
            (json!({"$and": []}), "q.$and", "at least one"),
            (
                json!({"$or": [{"params.x": {"$gt": "high"}}]}),
                "q.$or[0].params.x.$gt",
                "not one",
            ),
            (
                json!({"params.x": {"$in": "a"}}),
                "q.params.x.$in",
                "takes an array",
            ),
            (
                json!({"params.x": {"$regex": "("}}),
                "q.params.x.$regex",
                "not a valid regex",
            ),
            (
                json!({"params.x": {"$regex": 5}}),
                "q.params.x.$regex",
                "string pattern",
            ),
            (
                json!({"params.x": {"$like": "a"}}),
                "q.params.x.$like",
                "unknown operator",
            ),
            (json!({"params.x": {}}), "q.params.x", "empty operator"),
            (json!({"body.model": "x"}), "q.body.model", "unknown field"),
            (json!({"params.": "x"}), "q.params.", "unknown field"),
            (json!({"metadata.": "x"}), "q.metadata.", "unknown field"),
        ];
        for (q, path, msg) in cases {
            let e = Query::compile(&q, "q").unwrap_err();
            assert_eq!(e.path, path, "{q}: {e}");
            assert!(e.message.contains(msg), "{q}: {e}");
        }
        let long = "a".repeat(MAX_REGEX_LEN + 1);
        let e = Query::compile(&json!({"params.x": {"$regex": long}}), "q").unwrap_err();
        assert!(e.message.contains("over 1024 bytes"));
        // A pattern whose compiled form is huge is refused, not compiled.
        let e =
            Query::compile(&json!({"params.x": {"$regex": "\\w{1000}{1000}"}}), "q").unwrap_err();
        assert!(e.message.contains("not a valid regex"), "{e}");
        let mut deep = json!({"params.x": 1});
        for _ in 0..=MAX_DEPTH {
            deep = json!({"$and": [deep]});
        }
        assert!(Query::compile(&deep, "q")
            .unwrap_err()
            .message
            .contains("nest deeper"));
    }
}
