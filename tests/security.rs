//! Redis AUTH with ACL users, and TLS (rediss://), end to end with a worker;
//! a wrong password is refused by name without printing it.

use sluice_tests::*;

const CONFIG: &str = r#"
[scripts."f/ok"]
command = ["cat"]
"#;

async fn runs_a_job(env: &TestEnv) {
    let _w = env.worker(&[], &[]);
    let out = env.sluice(&["enqueue", "f/ok", "--args", r#"{"secure":true}"#], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let client = env.client().await;
    let job = env.finish(&client, &[id]).await.remove(0);
    assert_eq!(job.result, Some(json!({"secure": true})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_works_and_a_wrong_password_is_refused_without_showing_it() {
    let port = free_port();
    let redis = RedisServer::spawn(
        &[
            "--port",
            &port.to_string(),
            "--user",
            "default",
            "off",
            "--user",
            "sluice",
            "on",
            ">s3cret-pw",
            "~*",
            "&*",
            "+@all",
        ],
        format!("redis://sluice:s3cret-pw@127.0.0.1:{port}"),
    );
    let env = TestEnv::with_redis(redis, CONFIG);
    runs_a_job(&env).await;

    let bad = write_file(
        &env.dir,
        "bad.toml",
        &format!("redis_url = \"redis://sluice:nope-pw@127.0.0.1:{port}\"\n{CONFIG}"),
    );
    let out = std::process::Command::new(bin("sluice"))
        .arg("--config")
        .arg(&bad)
        .args(["enqueue", "f/ok"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        err.contains(&format!("sluice:***@127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains("nope-pw"), "the password leaked: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_works() {
    let dir = std::env::temp_dir().join(format!("sluice-tls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl makes the test's certificate");
    assert!(made.status.success());
    let port = free_port();
    let redis = RedisServer::spawn(
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
            "--tls-ca-cert-file",
            cert.to_str().unwrap(),
            "--tls-auth-clients",
            "no",
            "--requirepass",
            "tls-pw",
        ],
        // A self-signed certificate: #insecure skips verifying it (a real
        // deployment trusts its CA through the system store instead).
        format!("rediss://:tls-pw@127.0.0.1:{port}/#insecure"),
    );
    let env = TestEnv::with_redis(redis, CONFIG);
    runs_a_job(&env).await;
    let _ = std::fs::remove_dir_all(&dir);
}
