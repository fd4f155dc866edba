//! The HTTP front: the OpenAI API listener ([`api`]) and the admin listener ([`admin`]), with
//! the state their handlers share.

pub mod admin;
pub mod api;

use std::sync::Arc;

use actix::Addr;
use dashmap::DashMap;

use crate::actors::supervisor::{Current, Supervisor};
use crate::config::Tree;
use crate::requestlog::RequestLog;

pub struct AppState {
    /// The root supervisor (reloads). Requests go to their worker's shard, an
    /// `Addr<Supervisor>` in the worker's app data.
    pub supervisor: Addr<Supervisor>,
    pub current: Current,
    pub log: Arc<RequestLog>,
    /// Compiled inline configs by their JSON text, tagged with the runtime generation.
    pub inline: DashMap<String, (u64, Arc<Tree>)>,
    pub reload: Arc<crate::daemon::ReloadStatus>,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Fires when the shutdown grace period ends: open streams and requests still routing end.
    pub grace_end: crate::daemon::GraceEnd,
}
