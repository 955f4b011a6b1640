//! The dashboard under test: a `sluice ui` process, Debian's headless
//! Chromium driven through chromedriver (WebDriver), and a bare HTTP client
//! for what a browser would not send.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, free_port, TestEnv, PATIENCE};

/// A `sluice ui` process of a test's namespace.
pub struct UiProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl UiProcess {
    /// Starts `sluice ui --listen <addr>` with `env`, and waits until it
    /// says it listens.
    pub fn start(env: &TestEnv, addr: &str, extra_env: &[(&str, &str)]) -> UiProcess {
        let mut child = Command::new(bin("sluice"))
            .arg("--config")
            .arg(&env.config_path)
            .args(["ui", "--listen", addr])
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sluice ui");
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let mut said = String::new();
        while !line.contains("listening on http://") {
            said.push_str(&line);
            line.clear();
            let n = err.read_line(&mut line).unwrap();
            assert!(n > 0, "sluice ui ended before listening: {said}");
        }
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        // Keep draining its stderr so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        UiProcess { child, base }
    }

    /// `base` with the host as a browser on this machine reaches it.
    pub fn local_base(&self) -> String {
        self.base.replace("0.0.0.0", "127.0.0.1")
    }
}

impl Drop for UiProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.1 exchange: the status code, the headers and the body.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let host = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(host).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {host}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

/// A chromedriver process and a WebDriver session on headless Chromium.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: fantoccini::Client,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    pub async fn start() -> Browser {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian's chromium-driver) must be installed: scripts/test.sh installs it");
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                // --no-sandbox: tests may run as root (CI does).
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = fantoccini::ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("WebDriver session on headless Chromium");
        Browser { driver, client }
    }

    /// Goes to `url` and turns the page's live refresh off, so that what
    /// the test reads is not replaced under it.
    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
        self.client
            .execute(
                "var b = document.getElementById('live'); if (b) { b.checked = false; }",
                vec![],
            )
            .await
            .unwrap();
    }

    /// Saves a screenshot of the current page as `name`.png in the
    /// directory named by SLUICE_TEST_SCREENSHOTS, when it is set.
    pub async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("SLUICE_TEST_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }
}

impl Browser {
    /// Ends the session (and its Chromium), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
