//! A flow run's steps as `sluice status` shows them, from the flow's state
//! hash and its config.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use sluice_shared::error::Result;

use crate::Client;

/// One step of a flow run, as `sluice status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct StepView {
    /// The step's id, as in the config.
    pub id: String,
    /// pending, running, succeeded or failed
    pub status: String,
    /// The step's result once it has succeeded (a for-each step's: the array of
    /// its iterations' results).
    pub result: Option<Value>,
    /// For a for-each step: iterations done and in all, once known.
    pub done: Option<u64>,
    /// For a for-each step: its iterations in all, once known.
    pub total: Option<u64>,
}

impl Client {
    /// The steps of flow run `id` (of flow `path`), in order.
    pub async fn flow_steps(&self, id: &str, path: &str) -> Result<Vec<StepView>> {
        let Some(flow) = self.config.flows.get(path) else {
            return Ok(vec![]);
        };
        let mut con = self.pool.get().await?;
        let mut fields = vec![
            "failed".to_string(),
            "fstep".to_string(),
            "fe_total".to_string(),
        ];
        for s in &flow.steps {
            fields.push(format!("r:{}", s.id));
            fields.push(format!("d:{}", s.id));
        }
        let values: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.keys_of(id).flow_state(id))
            .arg(&fields)
            .query_async(&mut *con)
            .await?;
        let v: HashMap<&str, String> = fields
            .iter()
            .map(String::as_str)
            .zip(values)
            .filter_map(|(f, v)| v.map(|v| (f, v)))
            .collect();
        let current: usize = v.get("fstep").and_then(|s| s.parse().ok()).unwrap_or(0);
        let total = v.get("fe_total").cloned();
        let failed = v.get("failed").cloned().unwrap_or_default();
        Ok(flow
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let result = v
                    .get(format!("r:{}", s.id).as_str())
                    .map(|r| serde_json::from_str(r).unwrap_or(Value::String(r.clone())));
                let status = if result.is_some() {
                    "succeeded"
                } else if failed.starts_with(&format!("step {} ", s.id))
                    || failed.starts_with(&format!("step {}[", s.id))
                {
                    "failed"
                } else if i == current {
                    "running"
                } else {
                    "pending"
                };
                let for_each = s.for_each.is_some() && i == current;
                StepView {
                    id: s.id.clone(),
                    status: status.to_string(),
                    result,
                    done: for_each.then(|| {
                        v.get(format!("d:{}", s.id).as_str())
                            .and_then(|d| d.parse().ok())
                            .unwrap_or(0)
                    }),
                    total: for_each
                        .then(|| total.as_deref().and_then(|t| t.parse().ok()))
                        .flatten(),
                }
            })
            .collect())
    }
}
