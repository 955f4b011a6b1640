//! The Sluice producer: a client library that Rust services use to enqueue,
//! wait for, inspect and cancel jobs, and the `sluice` command line on top of it.

mod client;
mod flows;
mod key_detail;
mod limits;
mod overview;
mod runs;
pub mod ui;
mod wait;
pub mod when;

pub use client::{CancelOutcome, Client, RetryOutcome};
pub use flows::StepView;
pub use key_detail::{KeyDetail, Slot};
pub use limits::{LimitState, SetLimit};
pub use overview::Overview;
pub use runs::RunsQuery;
pub use sluice_shared::job::{Job, JobKind, JobRequest, Status};
pub use sluice_shared::{Config, Error, JobId, Result};
pub use wait::{Progress, WaitOutcome};
