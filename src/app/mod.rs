//! The daemon's life cycle ([`daemon`]: start, reload, drain and exit) and its memory policy
//! ([`memory`]).

pub mod daemon;
pub mod memory;
