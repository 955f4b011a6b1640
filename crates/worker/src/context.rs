//! What every execution may need: the config, the registered handlers and
//! the way to Redis. A leaf the dispatcher fills and the runners read.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_shared::redis_conn::Pool;
use sluice_shared::{Config, Keys};

use crate::handler::Handler;

pub struct Shared {
    pub config: Arc<Config>,
    pub handlers: Arc<HashMap<String, Arc<dyn Handler>>>,
    pub keys: Keys,
    pub pool: Pool,
    /// Every partition of the namespace (a flow's steps may live in others).
    pub parts: Arc<sluice_shared::partitions::Partitions>,
}
