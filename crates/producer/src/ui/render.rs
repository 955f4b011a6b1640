//! The page layout and the small pieces every page uses: links, status
//! badges, times as ages with their date, and the embedded assets.

use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use maud::{html, Markup, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::when;

const STYLE: &str = include_str!("assets/style.css");
const SCRIPT: &str = include_str!("assets/live.js");

/// Every byte but letters, digits and `-._~` is escaped: a key may hold
/// any character, `/` and `?` included.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` escaped for a URL's path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The URL of a concurrency key's page.
pub(crate) fn key_url(key: &str) -> String {
    format!("/keys/{}", enc(key))
}

/// The URL of a job's page.
pub(crate) fn job_url(id: &str) -> String {
    format!("/jobs/{}", enc(id))
}

/// A whole page: `nav` names the current section ("overview", "runs",
/// "keys" or "" for none). Its `<main>` is what live.js refreshes.
pub(crate) fn page(title: &str, nav: &str, body: Markup) -> Markup {
    let link = |href: &str, name: &str, label: &str| {
        html! { a href=(href) class=[(nav == name).then_some("current")] { (label) } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Sluice" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/live.js" defer {}
            }
            body {
                header {
                    span.brand { "Sluice" }
                    nav {
                        (link("/", "overview", "Overview"))
                        (link("/runs", "runs", "Runs"))
                        (link("/keys", "keys", "Keys"))
                    }
                    span.live { label { input type="checkbox" id="live" checked; " live" } }
                }
                main data-live="1" { (body) }
            }
        }
    }
}

/// Only the `<main>` part, for live.js's refresh (it sends this header).
pub(crate) fn fragment_only(headers: &HeaderMap) -> bool {
    headers.contains_key("x-sluice-fragment")
}

/// `page`, or only its body for a live refresh.
pub(crate) fn respond(headers: &HeaderMap, title: &str, nav: &str, body: Markup) -> Markup {
    if fragment_only(headers) {
        body
    } else {
        page(title, nav, body)
    }
}

/// A status as a coloured badge.
pub(crate) fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge {status}")) { (status) } }
}

/// A time as its age ("3 s ago", "in 2 min"), with the date on hover.
pub(crate) fn at(ms: Option<i64>, now: i64) -> Markup {
    match ms {
        Some(t) => html! { time datetime=(t) title=(when::date(t)) { (when::age(now - t)) } },
        None => html! { span.none { "—" } },
    }
}

/// A span of ms, worded ("1.2 s").
pub(crate) fn span_ms(ms: Option<i64>) -> Markup {
    match ms {
        Some(d) => html! { (when::duration(d.max(0) as u64)) },
        None => html! { span.none { "—" } },
    }
}

/// A concurrency key as a link to its page.
pub(crate) fn key_link(key: Option<&str>) -> Markup {
    match key {
        Some(k) => html! { a.key href=(key_url(k)) { (k) } },
        None => html! { span.none { "—" } },
    }
}

/// A POST form of one button for an action, with the CSRF token and the
/// page to come back to.
pub(crate) fn action(
    csrf: &str,
    what: &str,
    fields: &[(&str, &str)],
    back: &str,
    label: &str,
) -> Markup {
    html! {
        form.action method="post" action=(format!("/actions/{what}")) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="back" value=(back);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button type="submit" name="do" value=(what) { (label) }
        }
    }
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        STYLE,
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        SCRIPT,
    )
}
