//! The `ui` scenario: how fast every dashboard page answers with many
//! finished jobs stored (1,000,000 at full size). The dashboard is served
//! in this process, exactly as `sluice ui` serves it, and each page is
//! fetched over HTTP five times; the median counts.

use std::io::{Read, Write};
use std::time::Instant;

use serde_json::{json, Map, Value};

use crate::fleet::BenchResult;
use crate::scenarios::{seed_finished, size, Args};

/// What every page must stay under.
const BUDGET_MS: f64 = 50.0;

/// One GET over a fresh connection: the status and the whole answer's time.
fn get(addr: std::net::SocketAddr, path: &str) -> BenchResult<(u16, f64)> {
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let head = String::from_utf8_lossy(&out[..out.len().min(20)]).to_string();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, ms))
}

pub(crate) async fn ui(args: &Args) -> BenchResult<Map<String, Value>> {
    let n = size(args, 1_000_000, 10_000);
    let (b, _) = seed_finished(args, "ui", n).await?;
    let some_job = b
        .client
        .runs(&sluice_producer::RunsQuery {
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or("no job stored")?
        .id;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = sluice_producer::ui::router(b.client.clone(), None);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let pages = [
        ("overview", "/".to_string()),
        ("runs", "/runs".to_string()),
        ("runs_by_key", "/runs?concurrency_key=k%2F7".to_string()),
        ("runs_by_status", "/runs?status=failed".to_string()),
        ("runs_by_path", "/runs?path=bench%2Fkeyed".to_string()),
        ("runs_by_workspace", "/runs?workspace=nobody".to_string()),
        ("runs_page_5", "/runs?page=5".to_string()),
        ("keys", "/keys".to_string()),
        ("key", "/keys/k%2F7".to_string()),
        ("job", format!("/jobs/{some_job}")),
    ];
    let mut f = Map::new();
    f.insert("jobs".into(), json!(n));
    let mut worst: f64 = 0.0;
    for (name, path) in pages {
        let mut times = Vec::new();
        for _ in 0..5 {
            let (code, ms) = tokio::task::spawn_blocking({
                let path = path.clone();
                move || get(addr, &path)
            })
            .await
            .map_err(|e| e.to_string())??;
            if code != 200 {
                return Err(format!("ui page {path}: status {code}"));
            }
            times.push(ms);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        worst = worst.max(times[2]);
        f.insert(format!("{name}_ms"), json!(times[2]));
    }
    f.insert("slowest_page_ms".into(), json!(worst));
    f.insert("under_50ms".into(), json!(worst < BUDGET_MS));
    Ok(f)
}
