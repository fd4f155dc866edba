//! The actor system: one [`target::TargetActor`] per provider account, owning its rate limiter
//! and health; one [`supervisor::Supervisor`] owning the compiled trees, selection and fallback,
//! and reloads. No handler awaits upstream I/O: the request task does that with a
//! [`target::Permit`].

pub mod reload;
pub mod supervisor;
pub mod target;
