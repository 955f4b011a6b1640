//! Who gets in, and which writes are honoured.
//!
//! - With a token (required beyond loopback), every request carries it: an
//!   `Authorization: Bearer <token>` header, or the cookie that `/login`
//!   sets. Without it a page answers 401 with a login form.
//! - Every POST is an action of one of our own forms: it carries this
//!   process's CSRF token, and a browser's `Origin` (or `Sec-Fetch-Site`)
//!   must be this site. A cross-site POST is refused with 403.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;

use super::render::page;
use super::UiState;

const COOKIE: &str = "sluice_ui";

/// A fresh random secret (two random UUIDs: 244 random bits).
pub(crate) fn new_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Without a token, the dashboard trusts whoever can reach loopback; a web
/// page whose name was made to resolve to 127.0.0.1 (DNS rebinding) would
/// reach it too, under its own name. So only a loopback name is accepted
/// as the Host: `localhost`, `127.0.0.1` or `[::1]` (with the port, when
/// known).
fn loopback_host(headers: &HeaderMap, port: Option<u16>) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let (name, p) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, Some(p)),
        _ => (host, None),
    };
    let port_ok = match (port, p) {
        (Some(want), Some(p)) => p.parse::<u16>() == Ok(want),
        (Some(want), None) => want == 80,
        (None, _) => true,
    };
    matches!(name, "localhost" | "127.0.0.1" | "[::1]") && port_ok
}

/// Compares in time independent of where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn carries_token(headers: &HeaderMap, token: &str) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    bearer.is_some_and(|b| same(b, token))
        || cookie_value(headers, COOKIE).is_some_and(|c| same(c, token))
}

/// Whether a browser says the request comes from another site. Requests
/// without these headers (curl, scripts) are judged by the token alone.
fn cross_site(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|h| h.to_str().ok());
    if let Some(origin) = origin {
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if origin == "null" || origin_host != host {
            return true;
        }
    }
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v != "same-origin" && v != "none")
}

/// Checks every request: the token, then for a POST its origin and CSRF
/// token (the form's `csrf` field, checked by the actions themselves).
pub(crate) async fn guard(State(ui): State<Arc<UiState>>, req: Request, next: Next) -> Response {
    let login = req.uri().path() == "/login";
    let asset = req.uri().path().starts_with("/assets/");
    if req.method() == Method::POST && cross_site(req.headers()) {
        return protect((StatusCode::FORBIDDEN, "cross-site request refused").into_response());
    }
    match &ui.token {
        Some(token) => {
            if !login && !asset && !carries_token(req.headers(), token) {
                return protect((StatusCode::UNAUTHORIZED, login_form(None)).into_response());
            }
        }
        None => {
            if !loopback_host(req.headers(), ui.port) {
                return protect(
                    (
                        StatusCode::MISDIRECTED_REQUEST,
                        "without a token the dashboard answers only to localhost, 127.0.0.1 or [::1]",
                    )
                        .into_response(),
                );
            }
        }
    }
    protect(next.run(req).await)
}

/// Adds the headers every answer carries.
fn protect(mut res: Response) -> Response {
    let h = res.headers_mut();
    // Never framed by another site (clickjacking), never cached (pages
    // hold job args), and a page and its live fragment share one URL.
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    h.insert(header::VARY, HeaderValue::from_static("x-sluice-fragment"));
    res
}

/// Whether a form's CSRF field is this process's token.
pub(crate) fn csrf_ok(ui: &UiState, field: &str) -> bool {
    same(field, &ui.csrf)
}

fn login_form(error: Option<&str>) -> maud::Markup {
    page(
        "Sign in",
        "",
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/login" {
                label { "Token " input type="password" name="token" autofocus; }
                " "
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(crate) async fn login_page() -> maud::Markup {
    login_form(None)
}

#[derive(serde::Deserialize)]
pub(crate) struct Login {
    token: String,
}

/// Checks the token and keeps it in a cookie for this site only.
pub(crate) async fn login(State(ui): State<Arc<UiState>>, Form(f): Form<Login>) -> Response {
    match &ui.token {
        Some(t) if same(&f.token, t) => {
            let cookie = format!("{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict");
            ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
        }
        Some(_) => (StatusCode::UNAUTHORIZED, login_form(Some("Wrong token."))).into_response(),
        None => Redirect::to("/").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_other_sites_are_cross_site() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert!(!cross_site(&h(&[("host", "a:1")])));
        assert!(!cross_site(&h(&[
            ("host", "a:1"),
            ("origin", "http://a:1")
        ])));
        assert!(cross_site(&h(&[
            ("host", "a:1"),
            ("origin", "http://evil:1")
        ])));
        assert!(cross_site(&h(&[("host", "a:1"), ("origin", "null")])));
        assert!(cross_site(&h(&[
            ("host", "a:1"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
        assert!(loopback_host(&h(&[("host", "127.0.0.1:8080")]), Some(8080)));
        assert!(loopback_host(&h(&[("host", "localhost:8080")]), Some(8080)));
        assert!(loopback_host(&h(&[("host", "[::1]:8080")]), Some(8080)));
        assert!(!loopback_host(
            &h(&[("host", "evil.example:8080")]),
            Some(8080)
        ));
        assert!(!loopback_host(&h(&[("host", "127.0.0.1:9")]), Some(8080)));
        assert!(!loopback_host(&h(&[]), Some(8080)));
    }
}
