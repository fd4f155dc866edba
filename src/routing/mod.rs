//! Routing decisions that need no actor: the tree walk ([`walk`]) and the token estimate a
//! leaf's budget is charged before the provider reports usage ([`estimate`]).

pub mod estimate;
pub mod walk;
