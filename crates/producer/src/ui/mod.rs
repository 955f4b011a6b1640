//! `sluice ui`: a dashboard served from the same config and Redis as the
//! command line. Server-rendered HTML that works without JavaScript; a small
//! script (assets/live.js) refreshes the page's main part every few seconds.
//! Every asset is embedded in the binary.
//!
//! Pages, at stable URLs: `/` (overview), `/runs?concurrency_key=&status=&
//! path=&workspace=&page=`, `/keys?q=&page=`, `/keys/<key>` (the key
//! percent-encoded), `/jobs/<id>`. Actions are POST forms under `/actions/`
//! that carry a CSRF token (see auth.rs).

mod actions;
mod auth;
mod pages;
mod render;
mod timeline;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use sluice_shared::error::{Error, Result};

use crate::Client;

/// What every request handler shares.
pub(crate) struct UiState {
    pub client: Client,
    /// The token every request must carry, when set.
    pub token: Option<String>,
    /// This process's CSRF token, embedded in every form.
    pub csrf: String,
    /// The port it listens on, when known: the Host a browser sends.
    pub port: Option<u16>,
}

/// The dashboard's routes over `client`: the pages, the actions and the
/// assets, behind the token check when `token` is set.
pub fn router(client: Client, token: Option<String>) -> Router {
    router_for(client, token, None)
}

/// `router`, for a server bound to `bound`: without a token, only requests
/// addressed to this machine by a loopback name are served (see auth.rs).
pub fn router_for(client: Client, token: Option<String>, bound: Option<SocketAddr>) -> Router {
    let state = Arc::new(UiState {
        client,
        // An empty token would let an empty cookie in.
        token: token.filter(|t| !t.is_empty()),
        csrf: auth::new_secret(),
        port: bound.map(|b| b.port()),
    });
    Router::new()
        .route("/", get(pages::overview))
        .route("/runs", get(pages::runs))
        .route("/keys", get(pages::keys))
        .route("/keys/{*key}", get(pages::key))
        .route("/jobs/{id}", get(pages::job))
        .route("/actions/cancel", post(actions::cancel))
        .route("/actions/retry", post(actions::retry))
        .route("/actions/pause", post(actions::pause))
        .route("/actions/resume", post(actions::resume))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/assets/style.css", get(render::style))
        .route("/assets/live.js", get(render::script))
        .fallback(pages::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .with_state(state)
}

/// Refuses to listen beyond loopback without a token: the dashboard can
/// cancel jobs and pause keys.
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<()> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(Error::Config(format!(
            "ui.listen: {addr} is reachable beyond this machine, so the dashboard needs a token: set [ui] token or SLUICE_UI_TOKEN"
        )));
    }
    Ok(())
}

/// Serves the dashboard on `addr` until `shutdown` completes.
pub async fn serve(
    client: Client,
    addr: SocketAddr,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_listen(addr, token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("ui.listen {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::Config(format!("ui.listen {addr}: {e}")))?;
    // The line scripts and tests wait for, with the port really bound.
    eprintln!("sluice ui: listening on http://{bound}/");
    let app = router_for(client, token, Some(bound));
    sluice_shared::http::serve(listener, app, shutdown).await;
    Ok(())
}
