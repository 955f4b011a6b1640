use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

/// What a handler returns: a JSON result, or the reason it failed.
pub type HandlerResult = Result<Value, String>;

/// One execution, as a handler sees it.
#[derive(Clone, Debug)]
pub struct JobContext {
    pub id: String,
    pub path: String,
    pub workspace: String,
    pub args: Value,
    pub attempt: u32,
    pub concurrency_key: Option<String>,
}

/// An async handler for a path; any `Fn(JobContext) -> impl Future<Output =
/// HandlerResult>` is one.
pub trait Handler: Send + Sync {
    fn call(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, ctx: JobContext) -> Pin<Box<dyn Future<Output = HandlerResult> + Send>> {
        Box::pin(self(ctx))
    }
}
