//! The dashboard's writes: cancel or retry a job, pause or resume a key.
//! Each is a POST of one of our forms (auth.rs checks where it comes from);
//! the form's CSRF field must be this process's token. Success sends the
//! browser back to the page it came from (303); a refusal says why.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::auth::csrf_ok;
use super::UiState;
use crate::{CancelOutcome, RetryOutcome};

#[derive(Deserialize)]
pub(crate) struct JobAction {
    csrf: String,
    id: String,
    #[serde(default)]
    back: String,
}

#[derive(Deserialize)]
pub(crate) struct KeyAction {
    csrf: String,
    key: String,
    #[serde(default)]
    for_s: Option<f64>,
    #[serde(default)]
    back: String,
}

/// Only a path of this site: never another site (`//host`, `http:`).
fn back_to(back: &str) -> String {
    let plain = !back.contains('\\') && !back.chars().any(char::is_control);
    if plain && back.starts_with('/') && !back.starts_with("//") {
        back.to_string()
    } else {
        "/".to_string()
    }
}

fn done(result: sluice_shared::Result<()>, back: &str) -> Response {
    match result {
        Ok(()) => Redirect::to(&back_to(back)).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

fn forbidden() -> Response {
    (StatusCode::FORBIDDEN, "missing or wrong CSRF token").into_response()
}

/// An action that changed nothing, said so (409) rather than redirected.
fn refused(why: &str) -> Response {
    (StatusCode::CONFLICT, why.to_string()).into_response()
}

pub(crate) async fn cancel(State(ui): State<Arc<UiState>>, Form(f): Form<JobAction>) -> Response {
    if !csrf_ok(&ui, &f.csrf) {
        return forbidden();
    }
    if let Err(e) = sluice_shared::JobId::parse(&f.id) {
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    match ui.client.cancel(&f.id).await {
        Ok(CancelOutcome::AlreadyFinished) => {
            refused("the job had already finished: nothing was cancelled")
        }
        other => done(other.map(|_| ()), &f.back),
    }
}

pub(crate) async fn retry(State(ui): State<Arc<UiState>>, Form(f): Form<JobAction>) -> Response {
    if !csrf_ok(&ui, &f.csrf) {
        return forbidden();
    }
    if let Err(e) = sluice_shared::JobId::parse(&f.id) {
        return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
    }
    match ui.client.retry(&f.id).await {
        Ok(RetryOutcome::Unfinished) => refused("the job has not finished: nothing to retry"),
        Ok(RetryOutcome::Succeeded) => refused("the job succeeded: nothing to retry"),
        Ok(RetryOutcome::FlowPart) => {
            refused("a flow's step or run: enqueue the flow again instead")
        }
        other => done(other.map(|_| ()), &f.back),
    }
}

pub(crate) async fn pause(State(ui): State<Arc<UiState>>, Form(f): Form<KeyAction>) -> Response {
    if !csrf_ok(&ui, &f.csrf) {
        return forbidden();
    }
    let secs = f.for_s.unwrap_or(60.0);
    if !(secs.is_finite() && secs > 0.0 && secs <= sluice_shared::config::MAX_SECONDS) {
        return (
            StatusCode::BAD_REQUEST,
            "for_s: must be more than 0 and at most 366 days",
        )
            .into_response();
    }
    let r = ui.client.pause(&f.key, Duration::from_secs_f64(secs)).await;
    done(r.map(|_| ()), &f.back)
}

pub(crate) async fn resume(State(ui): State<Arc<UiState>>, Form(f): Form<KeyAction>) -> Response {
    if !csrf_ok(&ui, &f.csrf) {
        return forbidden();
    }
    done(ui.client.resume(&f.key).await, &f.back)
}
