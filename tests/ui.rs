//! The dashboard (`sluice ui`) in a real browser, Debian's headless
//! Chromium, against a seeded fleet with a throttled key: the Runs filter
//! by key, the Keys page against `sluice limits --json`, a cancel from the
//! page; and who gets in: no token beyond loopback, a wrong token, a
//! cross-site POST.

use fantoccini::Locator;
use sluice_producer::JobRequest;
use sluice_tests::*;

fn config(flag: &std::path::Path) -> String {
    let flag = flag.display();
    format!(
        r#"
[worker]
concurrency = 8

[scripts."crm/sync"]
command = ["sh", "-c", "while [ ! -e {flag} ]; do sleep 0.05; done; echo '{{\"synced\": true}}'"]
concurrency = {{ max = 1, window_s = 0, key = "crm/$args[account]" }}

[scripts."mail/send"]
command = ["sh", "-c", "echo '\"sent\"'"]
concurrency = {{ max = 2, window_s = 3600, key = "mail" }}

[scripts."f/boom"]
command = ["sh", "-c", "echo 'no such account' >&2; exit 1"]
max_attempts = 1
"#
    )
}

/// A fleet at rest: key crm/acme held by a job that runs until the test
/// lets it go, with three more waiting; key crm/globex the same with one
/// waiting; mail finished jobs in their window; one failed job.
struct Seeded {
    env: TestEnv,
    flag: std::path::PathBuf,
    _scratch: Scratch,
    _worker: WorkerProcess,
    acme: Vec<String>,
    globex: Vec<String>,
    client: sluice_producer::Client,
}

async fn seed() -> Seeded {
    let scratch = Scratch::new("ui");
    let flag = scratch.path("release");
    let env = TestEnv::new(&config(&flag));
    let worker = env.worker(&[], &[]);
    let client = env.client().await;
    let sync = |a: &str| JobRequest::new("crm/sync", json!({ "account": a }));
    let acme = client
        .enqueue_batch(&[sync("acme"), sync("acme"), sync("acme"), sync("acme")])
        .await
        .unwrap();
    let globex = client
        .enqueue_batch(&[sync("globex"), sync("globex")])
        .await
        .unwrap();
    let mail = env.enqueue(&client, "mail/send", json!({}), 2).await;
    let boom = env.enqueue(&client, "f/boom", json!({}), 1).await;
    env.finish(&client, &[mail, boom].concat()).await;
    // Both of mail's slots are in their hour-long window: of three more,
    // two get a slot reserved for when a window ends, one waits behind.
    let later = env.enqueue(&client, "mail/send", json!({}), 3).await;
    // crm keys: one running each, the rest waiting.
    let all: Vec<_> = acme.iter().chain(&globex).chain(&later).cloned().collect();
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let jobs = client.jobs(&all).await.unwrap();
        let running = jobs
            .iter()
            .flatten()
            .filter(|j| j.status == "running")
            .count();
        let waiting = jobs
            .iter()
            .flatten()
            .filter(|j| j.status == "waiting")
            .count();
        if (running, waiting) == (2, 7) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "fleet never settled: {jobs:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    Seeded {
        env,
        flag,
        _scratch: scratch,
        _worker: worker,
        acme: acme.into_iter().map(String::from).collect(),
        globex: globex.into_iter().map(String::from).collect(),
        client,
    }
}

async fn texts(b: &Browser, css: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in b.client.find_all(Locator::Css(css)).await.unwrap() {
        out.push(e.text().await.unwrap().trim().to_string());
    }
    out
}

/// The number in the cell `css` of a table row.
async fn count_in(row: &fantoccini::elements::Element, css: &str) -> u64 {
    let cell = row.find(Locator::Css(css)).await.unwrap();
    cell.text().await.unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_keys_and_runs_and_cancels_from_the_page() {
    let s = seed().await;
    let ui = UiProcess::start(&s.env, "127.0.0.1:0", &[]);
    let b = Browser::start().await;
    let c = &b.client;

    // Overview.
    b.goto(&format!("{}/", ui.base)).await;
    let labels = texts(&b, ".card .l").await;
    let numbers = texts(&b, ".card .n").await;
    let card = |l: &str| numbers[labels.iter().position(|x| x == l).unwrap()].clone();
    // Two crm jobs run; four crm jobs and three mail jobs wait (two of
    // those with a reserved slot, whose moments are in a delayed set).
    assert_eq!(card("ready to run"), "0", "{labels:?} {numbers:?}");
    assert_eq!(card("running or scheduled"), "2", "{labels:?} {numbers:?}");
    assert_eq!(card("waiting on limits"), "7", "{labels:?} {numbers:?}");
    assert_eq!(card("succeeded"), "2");
    assert_eq!(card("failed"), "1");
    // Without a token, only a loopback name is served (DNS rebinding).
    let host = ui
        .base
        .trim_start_matches("http://")
        .replace("127.0.0.1", "evil.example");
    let (code, _, _) = http(&ui.base, "GET", "/", &[("Host", &host)], "");
    assert_eq!(code, 421, "a page asked for under another name");
    b.screenshot("overview").await;

    // Runs filtered by key: exactly that key's jobs, newest first.
    b.goto(&format!("{}/runs?concurrency_key=crm%2Facme", ui.base))
        .await;
    let mut shown = Vec::new();
    for row in c.find_all(Locator::Css("#runs tbody tr")).await.unwrap() {
        shown.push(row.attr("data-id").await.unwrap().unwrap());
    }
    let mut want = s.acme.clone();
    want.reverse();
    assert_eq!(shown, want, "the Runs page filtered by crm/acme");
    let keys_shown = texts(&b, "#runs td.ckey").await;
    assert!(keys_shown.iter().all(|k| k == "crm/acme"), "{keys_shown:?}");
    b.goto(&format!("{}/runs", ui.base)).await;
    b.screenshot("runs").await;

    // Keys: held and waiting as `sluice limits --json` says.
    let out = s.env.sluice(&["limits", "--json"], None);
    assert!(out.status.success());
    let cli: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    b.goto(&format!("{}/keys", ui.base)).await;
    let mut page = Vec::new();
    for row in c.find_all(Locator::Css("#keys tbody tr")).await.unwrap() {
        let key = row.attr("data-key").await.unwrap().unwrap();
        page.push((
            key,
            count_in(&row, "td.held").await,
            count_in(&row, "td.waiting").await,
        ));
    }
    let from_cli: Vec<(String, u64, u64)> = cli
        .iter()
        .map(|l| {
            (
                l["key"].as_str().unwrap().to_string(),
                l["held"].as_u64().unwrap(),
                l["waiting"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(page, from_cli, "the Keys page against limits --json");
    assert!(page.contains(&("crm/acme".to_string(), 1, 3)), "{page:?}");
    b.screenshot("keys").await;

    // A key's page, through its link.
    c.find(Locator::Css("#keys a.key[href='/keys/crm%2Facme']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(texts(&b, "#held").await, ["1"]);
    assert_eq!(texts(&b, "#slots tbody tr").await.len(), 1);
    // A key with slots in their window and reserved for waiters.
    b.goto(&format!("{}/keys/mail", ui.base)).await;
    let states = texts(&b, "#slots tbody td:nth-child(2)").await;
    assert_eq!(
        states.iter().filter(|s| s.contains("reserved")).count(),
        2,
        "{states:?}"
    );
    b.screenshot("key").await;

    // A waiting job's page: cancel it from the page.
    let victim = &s.acme[3];
    b.goto(&format!("{}/jobs/{victim}", ui.base)).await;
    b.screenshot("job").await;
    c.find(Locator::Css("form.action button[value='cancel']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Back on the job's page, which now says so; and so does Redis.
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath("//*[@id='status']/span[text()='cancelled']"))
        .await
        .expect("the job's page after the cancel");
    let job = s.client.job(victim).await.unwrap().unwrap();
    assert_eq!(job.status, "cancelled");
    // The others of the key run once it frees; the cancelled one never did.
    std::fs::write(&s.flag, "").unwrap();
    let rest: Vec<String> = s.acme[..3].iter().chain(&s.globex).cloned().collect();
    let done = s.env.finish(&s.client, &rest).await;
    assert!(done.iter().all(|j| j.status == "succeeded"), "{done:?}");
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_every_request_needs_the_token_and_posts_must_be_ours() {
    let s = seed().await;
    // No token: refused at start, naming what is missing.
    let out = s.env.sluice(&["ui", "--listen", "0.0.0.0:0"], None);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("token") && err.contains("SLUICE_UI_TOKEN"),
        "{err}"
    );

    let token = "correct-horse-battery-staple";
    let ui = UiProcess::start(&s.env, "0.0.0.0:0", &[("SLUICE_UI_TOKEN", token)]);
    let base = ui.local_base();
    let bearer = format!("Bearer {token}");
    let (code, _, _) = http(&base, "GET", "/", &[], "");
    assert_eq!(code, 401, "no token");
    let (code, _, _) = http(
        &base,
        "GET",
        "/",
        &[("Authorization", "Bearer wrong-token-of-length")],
        "",
    );
    assert_eq!(code, 401, "wrong token");
    let (code, _, body) = http(&base, "GET", "/keys", &[("Authorization", &bearer)], "");
    assert_eq!(code, 200, "right token");
    assert!(body.contains("crm/acme"));

    // The CSRF token, as one of our forms carries it.
    let victim = &s.acme[3];
    let (_, _, page) = http(
        &base,
        "GET",
        &format!("/jobs/{victim}"),
        &[("Authorization", &bearer)],
        "",
    );
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_string();
    let form = format!("csrf={csrf}&id={victim}&back=%2F");
    // A cross-site POST, even with the token (a browser's cookie) and the
    // form's fields, is refused; so is one without the CSRF token.
    let (code, _, _) = http(
        &base,
        "POST",
        "/actions/cancel",
        &[
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        &form,
    );
    assert_eq!(code, 403, "cross-site POST");
    let (code, _, _) = http(
        &base,
        "POST",
        "/actions/cancel",
        &[("Authorization", &bearer)],
        &format!("csrf=guess&id={victim}&back=%2F"),
    );
    assert_eq!(code, 403, "POST without the CSRF token");
    assert_eq!(
        s.client.job(victim).await.unwrap().unwrap().status,
        "waiting"
    );
    // Our own form, from our own page: done, and back where it was.
    let origin = base.clone();
    let (code, head, _) = http(
        &base,
        "POST",
        "/actions/cancel",
        &[("Authorization", &bearer), ("Origin", &origin)],
        &form,
    );
    assert_eq!(code, 303, "{head}");
    assert_eq!(
        s.client.job(victim).await.unwrap().unwrap().status,
        "cancelled"
    );

    // In a browser: the login form sets the cookie that later pages carry.
    let b = Browser::start().await;
    b.goto(&format!("{base}/keys")).await;
    let field = b
        .client
        .find(Locator::Css("input[name='token']"))
        .await
        .unwrap();
    field.send_keys(token).await.unwrap();
    field.send_keys("\u{E007}").await.unwrap(); // Enter
                                                // Signed in: sent on to the overview.
    b.client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(".cards"))
        .await
        .expect("the overview after signing in");
    b.goto(&format!("{base}/keys")).await;
    let rows = b
        .client
        .find_all(Locator::Css("#keys tbody tr"))
        .await
        .unwrap();
    assert!(!rows.is_empty());
    b.close().await;
    std::fs::write(&s.flag, "").unwrap();
}
