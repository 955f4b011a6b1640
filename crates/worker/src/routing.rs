//! What a worker can run among the jobs of its tags, said once at start.

use std::collections::HashMap;
use std::sync::Arc;

use sluice_shared::Config;

use crate::handler::Handler;

/// The paths of the worker's tags that it can run neither as a command nor
/// with a registered handler, each with the tag that sends them here and
/// what it is (a script, or a flow's step through its script). Their jobs
/// would fail on this worker.
pub fn unrunnable(config: &Config, handlers: &HashMap<String, Arc<dyn Handler>>) -> Vec<String> {
    let serves = |tag: &str| config.worker.tags.iter().any(|t| t == tag);
    let runnable = |path: &str| {
        handlers.contains_key(path)
            || config
                .scripts
                .get(path)
                .is_some_and(|s| s.command.is_some())
    };
    let mut out = Vec::new();
    for path in config.scripts.keys() {
        let tag = config.script_tag(path);
        if serves(tag) && !runnable(path) {
            out.push(format!("script {path:?} (tag {tag:?})"));
        }
    }
    for (flow, f) in &config.flows {
        for step in &f.steps {
            let Some(path) = &step.script else { continue };
            let tag = config.step_tag(flow, step);
            // Run on its own, the script's tag was looked at above.
            if tag != config.script_tag(path) && serves(tag) && !runnable(path) {
                out.push(format!(
                    "script {path:?} as step {:?} of flow {flow:?} (tag {tag:?})",
                    step.id
                ));
            }
        }
    }
    out
}

/// Warns about each of [`unrunnable`]'s paths.
pub fn warn_unrunnable(config: &Config, handlers: &HashMap<String, Arc<dyn Handler>>) {
    for what in unrunnable(config, handlers) {
        tracing::warn!(
            "{what} is among this worker's tags but has neither a command nor a registered handler here: its jobs would fail on this worker"
        );
    }
}
