//! The token cost a request is charged against a target's token budget before the provider
//! reports real usage (corrected afterwards, see `actors::target::budget`). It depends on the
//! leaf: its `override_params` may set the completion budget, and Anthropic always reserves
//! `max_tokens` (`default_max_tokens` when the client sends none).

use serde_json::{Map, Value};

use crate::config::{Leaf, ProviderKind, TargetSpec};

/// What is known about a request's token cost before a leaf is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt tokens, estimated at ~4 bytes per token of the body.
    pub prompt: u32,
    /// The completion budget the client asked for, if any.
    pub completion: Option<u64>,
}

fn completion_budget(m: &Map<String, Value>) -> Option<u64> {
    ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| m.get(*k).and_then(Value::as_u64))
}

impl Estimate {
    /// `completion`: the client's `max_completion_tokens`, else its `max_tokens`.
    pub fn of(completion: Option<u64>, raw_len: usize) -> Estimate {
        Estimate {
            prompt: u32::try_from(raw_len / 4).unwrap_or(u32::MAX),
            completion,
        }
    }

    /// The estimate before a leaf is known (a gateway key's `tpm`): the prompt plus the
    /// client's completion budget.
    pub fn tokens(&self) -> u32 {
        u32::try_from((self.prompt as u64).saturating_add(self.completion.unwrap_or(0)))
            .unwrap_or(u32::MAX)
    }

    /// The estimate on one leaf: its overrides win over the client's budget, as they win in
    /// the body the provider sees.
    pub fn for_leaf(&self, leaf: &Leaf, spec: &TargetSpec) -> u32 {
        let completion = completion_budget(&leaf.override_params)
            .or(self.completion)
            .or((spec.provider == ProviderKind::Anthropic).then_some(spec.default_max_tokens))
            .unwrap_or(0);
        u32::try_from((self.prompt as u64).saturating_add(completion)).unwrap_or(u32::MAX)
    }
}
