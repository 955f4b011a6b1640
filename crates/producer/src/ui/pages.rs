//! The pages: each reads what it shows in a few round trips and renders it
//! on the server. A query that cannot be answered (Redis down) shows the
//! error in the page, with status 503.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use sluice_shared::job::{Job, Status};

use super::render::{action, at, badge, enc, job_url, key_link, key_url, respond, span_ms};
use super::UiState;
use crate::{when, KeyDetail, LimitState, RunsQuery, Slot};

/// Jobs per page of Runs; keys per page of Keys.
const PER_PAGE: usize = 50;
/// Finished jobs looked at per status index for one page of Runs, at most,
/// and entries read from each live structure (ready lists, delayed sets,
/// leases, wait lines) for the unfinished ones.
const SCAN: usize = 5_000;
/// The deepest page of Runs.
const MAX_PAGE: usize = 20;

fn failure(headers: &HeaderMap, e: sluice_shared::Error) -> Response {
    let body = html! { h1 { "Cannot read Redis" } p.error { (e.to_string()) } };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        respond(headers, "Error", "", body),
    )
        .into_response()
}

pub(crate) async fn not_found(headers: HeaderMap) -> Response {
    let body = html! { h1 { "Not found" } p { a href="/" { "Back to the overview" } } };
    (
        StatusCode::NOT_FOUND,
        respond(&headers, "Not found", "", body),
    )
        .into_response()
}

pub(crate) async fn overview(State(ui): State<Arc<UiState>>, headers: HeaderMap) -> Response {
    let o = match ui.client.overview().await {
        Ok(o) => o,
        Err(e) => return failure(&headers, e),
    };
    let card = |n: String, label: &str, href: Option<String>| {
        html! {
            div.card {
                div.n { @if let Some(h) = &href { a href=(h) { (n) } } @else { (n) } }
                div.l { (label) }
            }
        }
    };
    let runs = |s: &str| Some(format!("/runs?status={s}"));
    let rate = format!(
        "{}{:.1}",
        if o.recent_capped { "≥ " } else { "" },
        o.jobs_per_s()
    );
    let body = html! {
        h1 { "Overview" }
        div.cards {
            (card(o.ready.to_string(), "ready to run", runs("queued")))
            (card(o.running_or_scheduled.to_string(), "running or scheduled", runs("running")))
            (card(o.waiting.to_string(), "waiting on limits", runs("waiting")))
            (card(rate, "jobs/s, last 10 s", None))
        }
        div.cards {
            (card(o.succeeded.to_string(), "succeeded", runs("succeeded")))
            (card(o.failed.to_string(), "failed", runs("failed")))
            (card(o.cancelled.to_string(), "cancelled", runs("cancelled")))
        }
        p.note { "Finished jobs stay for the retention period. Read at " (when::date(o.now)) "." }
        p { a href="/keys" { "Concurrency keys →" } }
    };
    respond(&headers, "Overview", "overview", body).into_response()
}

#[derive(Deserialize, Default)]
pub(crate) struct RunsParams {
    concurrency_key: Option<String>,
    status: Option<String>,
    path: Option<String>,
    workspace: Option<String>,
    page: Option<usize>,
}

/// An empty filter field means no filter.
fn given(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.is_empty()).cloned()
}

pub(crate) async fn runs(
    State(ui): State<Arc<UiState>>,
    headers: HeaderMap,
    Query(p): Query<RunsParams>,
) -> Response {
    let status = given(&p.status);
    let parsed = status.as_deref().map(Status::parse);
    if let Some(None) = parsed {
        let body = html! { h1 { "Runs" } p.error { "Unknown status " code { (status.unwrap_or_default()) } "." } };
        return (
            StatusCode::BAD_REQUEST,
            respond(&headers, "Runs", "runs", body),
        )
            .into_response();
    }
    // Deeper than this, a filter (or `sluice runs`) serves better, and
    // each page costs Redis more.
    let page = p.page.unwrap_or(0).min(MAX_PAGE);
    let q = RunsQuery {
        concurrency_key: given(&p.concurrency_key),
        status: parsed.flatten(),
        path: given(&p.path),
        workspace: given(&p.workspace),
        limit: (page + 1) * PER_PAGE + 1,
        scan_limit: Some(SCAN),
    };
    let found = match ui.client.runs(&q).await {
        Ok(f) => f,
        Err(e) => return failure(&headers, e),
    };
    let more = found.len() > (page + 1) * PER_PAGE;
    let shown: Vec<&Job> = found.iter().skip(page * PER_PAGE).take(PER_PAGE).collect();
    let now = when::now_ms();
    let link = |page: usize| {
        let mut parts = Vec::new();
        for (k, v) in [
            ("concurrency_key", &q.concurrency_key),
            ("status", &status),
            ("path", &q.path),
            ("workspace", &q.workspace),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", enc(v)));
            }
        }
        parts.push(format!("page={page}"));
        format!("/runs?{}", parts.join("&"))
    };
    let field = |name: &str, label: &str, value: &Option<String>| {
        html! { label { (label) input type="text" name=(name) value=(value.as_deref().unwrap_or("")); } }
    };
    let statuses = [
        "queued",
        "scheduled",
        "waiting",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ];
    let body = html! {
        h1 { "Runs" }
        form.filters method="get" action="/runs" {
            (field("concurrency_key", "Concurrency key", &q.concurrency_key))
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in statuses {
                        option value=(s) selected[status.as_deref() == Some(s)] { (s) }
                    }
                }
            }
            (field("path", "Path", &q.path))
            (field("workspace", "Workspace", &q.workspace))
            button type="submit" { "Filter" }
            a href="/runs" { "clear" }
        }
        table #runs {
            thead { tr { th { "Job" } th { "Status" } th { "Path" } th { "Workspace" } th { "Key" } th.num { "Attempt" } th { "Created" } th { "Took" } } }
            tbody {
                @for j in &shown {
                    tr data-id=(j.id) {
                        td.mono { a href=(job_url(&j.id)) title=(j.id) { "…" (j.id.get(j.id.len().saturating_sub(12)..).unwrap_or(&j.id)) } }
                        td { (badge(j.status.as_str())) }
                        td { (j.path) }
                        td { (j.workspace) }
                        td.ckey { (key_link(j.concurrency_key.as_deref())) }
                        td.num { (j.attempt) "/" (j.max_attempts) }
                        td { (at(j.created_at, now)) }
                        td { (span_ms(j.started_at.zip(j.ended_at).map(|(s, e)| e - s))) }
                    }
                }
            }
        }
        @if shown.is_empty() { p.none { "No job matches." } }
        div.pager {
            @if page > 0 { a href=(link(page - 1)) { "← newer" } }
            @if more && page < MAX_PAGE { a href=(link(page + 1)) { "older →" } }
        }
        p.note { "Newest first. Without a key filter, the newest " (SCAN) " finished jobs of each status are looked at; filter by key or status to reach older ones." }
    };
    respond(&headers, "Runs", "runs", body).into_response()
}

#[derive(Deserialize, Default)]
pub(crate) struct KeysParams {
    q: Option<String>,
    page: Option<usize>,
}

/// "2 at a time", or "5 per 1.0 min" with a window.
fn limit_text(max: u32, window_s: f64) -> String {
    if window_s > 0.0 {
        format!("{max} per {}", when::duration((window_s * 1000.0) as u64))
    } else {
        format!("{max} at a time")
    }
}

fn limit_cell(s: &LimitState) -> Markup {
    html! {
        (limit_text(s.max, s.window_s))
        @if let Some(set) = &s.set {
            br; span.warn { "set at run time: " (limit_text(set.max, set.window_s)) }
        }
    }
}

pub(crate) async fn keys(
    State(ui): State<Arc<UiState>>,
    headers: HeaderMap,
    Query(p): Query<KeysParams>,
) -> Response {
    let all = match ui.client.limit_keys().await {
        Ok(k) => k,
        Err(e) => return failure(&headers, e),
    };
    let filter = given(&p.q);
    let matching: Vec<&String> = all
        .iter()
        .filter(|k| filter.as_ref().is_none_or(|f| k.contains(f.as_str())))
        .collect();
    let page = p.page.unwrap_or(0).min(matching.len() / PER_PAGE);
    let shown: Vec<&String> = matching
        .iter()
        .skip(page * PER_PAGE)
        .take(PER_PAGE)
        .copied()
        .collect();
    let states = match ui.client.limits_of(&shown).await {
        Ok(s) => s,
        Err(e) => return failure(&headers, e),
    };
    let now = when::now_ms();
    let link = |page: usize| match &filter {
        Some(f) => format!("/keys?q={}&page={page}", enc(f)),
        None => format!("/keys?page={page}"),
    };
    let body = html! {
        h1 { "Concurrency keys" }
        form.filters method="get" action="/keys" {
            label { "Key contains" input type="text" name="q" value=(filter.as_deref().unwrap_or("")); }
            button type="submit" { "Filter" }
        }
        table #keys {
            thead { tr { th { "Key" } th { "Limit" } th.num { "Held" } th.num { "Waiting" } th { "Next free" } th { "Paused" } } }
            tbody {
                @for s in &states {
                    tr data-key=(s.key) {
                        td { a.key href=(key_url(&s.key)) { (s.key) } }
                        td { (limit_cell(s)) }
                        td.num.held { (s.held) }
                        td.num.waiting { (s.waiting) }
                        td { (at(s.next_free_at, now)) }
                        td { @if let Some(p) = s.paused_until { "until " (at(Some(p), now)) } @else { span.none { "—" } } }
                    }
                }
            }
        }
        @if states.is_empty() { p.none { "No key in use." } }
        div.pager {
            @if page > 0 { a href=(link(page - 1)) { "← previous" } }
            @if matching.len() > (page + 1) * PER_PAGE { a href=(link(page + 1)) { "next →" } }
        }
        p.note { (matching.len()) " keys. Held counts running jobs, slots reserved for waiters and slots in their window." }
    };
    respond(&headers, "Keys", "keys", body).into_response()
}

pub(crate) async fn key(
    State(ui): State<Arc<UiState>>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    let d: KeyDetail = match ui.client.key_detail(&key).await {
        Ok(d) => d,
        Err(e) => return failure(&headers, e),
    };
    let now = d.now;
    let back = key_url(&key);
    let body = html! {
        h1 { "Key " code { (key) } }
        @match &d.state {
            Some(s) => {
                dl.facts {
                    dt { "Limit" } dd { (limit_cell(s)) }
                    dt { "Held" } dd #held { (s.held) }
                    dt { "Waiting" } dd #waiting { (s.waiting) }
                    dt { "Next free" } dd { (at(s.next_free_at, now)) }
                    dt { "Paused" } dd {
                        @if let Some(p) = s.paused_until {
                            "until " (at(Some(p), now)) " "
                            (action(&ui.csrf, "resume", &[("key", &key)], &back, "Resume"))
                        } @else {
                            form.action method="post" action="/actions/pause" {
                                input type="hidden" name="csrf" value=(ui.csrf);
                                input type="hidden" name="back" value=(back);
                                input type="hidden" name="key" value=(key);
                                "no — pause for " input type="number" name="for_s" value="60" min="0.001" step="any" style="width:6em"; " s "
                                button type="submit" { "Pause" }
                            }
                        }
                    }
                    dt { "Jobs" } dd { a href=(format!("/runs?concurrency_key={}", enc(&key))) { "all runs of this key" } }
                }
            }
            None => { p.none { "This key is not in use (none of its jobs admitted yet, or idle and pruned)." } }
        }
        h2 { "Last minutes" }
        (super::timeline::svg(&d, now))
        h2 { "Slots held" }
        table #slots {
            thead { tr { th { "Job" } th { "State" } th { "Frees" } } }
            tbody {
                @for s in &d.slots {
                    @match s {
                        Slot::Running { id } => tr { td.mono { a href=(job_url(id)) { (id) } } td { (badge("running")) } td { span.none { "when it ends" } } },
                        Slot::Reserved { id, due } => tr { td.mono { a href=(job_url(id)) { (id) } } td { "reserved for a waiter" } td { (at(*due, now)) } },
                        Slot::Window { id, until } => tr { td.mono { a href=(job_url(id)) { (id) } } td { "in its window" } td { (at(Some(*until), now)) } },
                        Slot::Paused { until } => tr { td { "—" } td { "paused" } td { (at(Some(*until), now)) } },
                    }
                }
            }
        }
        @if d.slots.is_empty() { p.none { "Nothing holds this key." } }
        h2 { "Waiting (" (d.waiting_total) ")" }
        @if d.waiters.is_empty() { p.none { "Nobody waits for a slot to free at an unknown moment." } }
        ol.mono { @for id in &d.waiters { li { a href=(job_url(id)) { (id) } } } }
        p.note { "Jobs with a reserved slot are under Slots held; these wait for a slot whose moment is not known yet." }
    };
    respond(&headers, &format!("Key {key}"), "keys", body).into_response()
}

pub(crate) async fn job(
    State(ui): State<Arc<UiState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if sluice_shared::JobId::parse(&id).is_err() {
        return not_found(headers).await;
    }
    let job = match ui.client.job(&id).await {
        Ok(Some(j)) => j,
        Ok(None) => {
            let body = html! { h1 { "No such job" } p { code { (id) } " is not stored (it may have been removed by retention)." } };
            return (
                StatusCode::NOT_FOUND,
                respond(&headers, "No such job", "runs", body),
            )
                .into_response();
        }
        Err(e) => return failure(&headers, e),
    };
    let steps = match job.kind {
        sluice_shared::JobKind::Flow => ui
            .client
            .flow_steps(&job.id, &job.path)
            .await
            .unwrap_or_default(),
        _ => vec![],
    };
    let key_state = match &job.concurrency_key {
        Some(k) => ui
            .client
            .limits_of(&[k])
            .await
            .ok()
            .and_then(|mut v| v.pop()),
        None => None,
    };
    let now = when::now_ms();
    let back = job_url(&job.id);
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let retryable = matches!(job.status, Status::Failed | Status::Cancelled)
        && job.kind == sluice_shared::JobKind::Script;
    let body = html! {
        h1 { "Job " code { (job.id) } " " span #status { (badge(job.status.as_str())) } }
        p {
            @if !job.status.is_final() { (action(&ui.csrf, "cancel", &[("id", &job.id)], &back, "Cancel")) " " }
            @if retryable { (action(&ui.csrf, "retry", &[("id", &job.id)], &back, "Retry")) }
        }
        dl.facts {
            dt { "Path" } dd { (job.path) " " span.note { "(" (job.kind.as_str()) ", tag " (job.tag) ")" } }
            dt { "Workspace" } dd { (job.workspace) }
            dt { "Concurrency key" } dd { (key_link(job.concurrency_key.as_deref()))
                @if let (Some(m), Some(w)) = (job.max, job.window_ms) { " — stamped " (m) " per " (when::duration(w)) } }
            dt { "Attempt" } dd { (job.attempt) " of " (job.max_attempts) }
            dt { "Created" } dd { (at(job.created_at, now)) }
            dt { "Ready" } dd { (at(job.ready_at, now)) }
            dt { "Started" } dd { (at(job.started_at, now)) }
            dt { "Ended" } dd { (at(job.ended_at, now)) }
            @if let Some(p) = &job.parent {
                dt { "Flow run" } dd { a href=(job_url(p)) { (p) } " step " code { (job.step.as_deref().unwrap_or("")) }
                    @if let Some(i) = job.iter { " [" (i) "]" } }
            }
        }
        h2 { "Attempts" }
        p.note { "Sluice keeps the last attempt's times and error; attempt " (job.attempt) " is the latest of " (job.max_attempts) " allowed." }
        table #attempts {
            thead { tr { th.num { "Attempt" } th { "Started" } th { "Ended" } th { "Took" } th { "Outcome" } } }
            tbody {
                @if job.attempt > 0 {
                    tr {
                        td.num { (job.attempt) }
                        td { (at(job.started_at, now)) }
                        td { (at(job.ended_at, now)) }
                        td { (span_ms(job.started_at.zip(job.ended_at).map(|(s, e)| e - s))) }
                        td { (badge(job.status.as_str())) }
                    }
                }
            }
        }
        h2 { "Args" }
        pre #args { (pretty(&job.args)) }
        @if let Some(r) = &job.result { h2 { "Result" } pre #result { (pretty(r)) } }
        @if let Some(e) = &job.error { h2 { "Error" } pre.error #error { (e) } }
        @if !steps.is_empty() {
            h2 { "Steps" }
            table #steps {
                thead { tr { th { "Step" } th { "Status" } th { "Progress" } } }
                tbody {
                    @for s in &steps {
                        tr { td { code { (s.id) } } td { (badge(&s.status)) }
                             td { @if let Some(t) = s.total { (s.done.unwrap_or(0)) " / " (t) } @else { span.none { "—" } } } }
                    }
                }
            }
        }
        @if let Some(s) = &key_state {
            h2 { "Its key now" }
            p { (key_link(Some(&s.key))) ": " (s.held) " held of " (s.set.as_ref().map_or(s.max, |x| x.max)) ", " (s.waiting) " waiting"
                @if let Some(p) = s.paused_until { ", paused until " (at(Some(p), now)) } }
        }
    };
    respond(&headers, &format!("Job {}", job.id), "runs", body).into_response()
}
