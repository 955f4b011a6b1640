//! The Sluice producer: a client library that Rust services use to enqueue,
//! wait for, inspect and cancel jobs, and the `sluice` command line on top of it.

mod client;
mod flows;
mod limits;
mod runs;
mod wait;

pub use client::{CancelOutcome, Client, RetryOutcome};
pub use flows::StepView;
pub use limits::{LimitState, SetLimit};
pub use runs::RunsQuery;
pub use sluice_shared::job::{Job, JobKind, JobRequest, Status};
pub use sluice_shared::{Config, Error, JobId, Result};
pub use wait::{Progress, WaitOutcome};
