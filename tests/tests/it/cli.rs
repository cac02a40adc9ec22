//! The `sluice` command line: help and defaults, the admin key (generated, env, flag, config file and their
//! precedence), configuration by file and env, startup errors, signals, log formats, access log.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use support::*;

/// Runs `sluice ARGS` to completion (killing it after `timeout`); returns (exit code, stdout + stderr).
fn run(args: &[&str], timeout: Duration) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(sluice_bin())
        .args(args)
        .current_dir(dir.path())
        .env_remove("SLUICE_ADMIN_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "run {}: {e} (build it with `cargo build -p sluice --bins`)",
                sluice_bin().display()
            )
        });
    let start = Instant::now();
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (code, text)
}

#[test]
fn help_documents_serve_flags_and_loopback_admin_default() {
    let (code, top) = run(&["--help"], Duration::from_secs(10));
    assert_eq!(code, Some(0), "{top}");
    assert!(top.contains("serve"), "`sluice --help` lists serve:\n{top}");

    let (code, help) = run(&["serve", "--help"], Duration::from_secs(10));
    assert_eq!(code, Some(0), "{help}");
    for needle in [
        "--data-dir",
        "--listen",
        "--tls-listen",
        "--admin-listen",
        "--metrics-listen",
        "--admin-key",
        "--config",
        "--log-format",
        "SLUICE_ADMIN_KEY",
        "127.0.0.1:9180",
        "127.0.0.1:9091",
        "0.0.0.0:9080",
        "0.0.0.0:9443",
    ] {
        assert!(
            help.contains(needle),
            "`sluice serve --help` should mention {needle}:\n{help}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_admin_key_is_private_persisted_and_reused() {
    let mut gw = gateway().generated_admin_key().start().await;
    let path = gw.data_dir().join("admin.key");
    let key = gw.key().to_string();
    assert!(key.len() >= 22, "a 128-bit+ key, got {} chars", key.len());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin.key mode {mode:o}");
    let logs = gw.logs();
    assert!(
        logs.contains("admin.key"),
        "the key's path is logged:\n{logs}"
    );
    assert!(!logs.contains(&key), "the key itself must not be logged");

    let admin = gw.admin();
    assert_eq!(admin.get("routes").await.status, 200);
    assert_eq!(admin.with_key(None).get("routes").await.status, 401);

    gw.restart().await;
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().trim(),
        key,
        "reused, not regenerated"
    );
    assert_eq!(gw.admin().get("routes").await.status, 200);

    let other = gateway().generated_admin_key().start().await;
    assert_ne!(other.key(), key, "each data dir gets its own random key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_key_precedence_is_flag_then_env_then_file() {
    let keys = |gw: &Gateway| {
        let admin = gw.admin();
        async move {
            let mut ok = Vec::new();
            for k in [
                "flag-key-0123456789",
                "env-key-0123456789",
                "file-key-0123456789",
            ] {
                if admin.with_key(Some(k)).get("routes").await.status == 200 {
                    ok.push(k);
                }
            }
            ok
        }
    };
    let file = "admin_key = \"file-key-0123456789\"\n";

    let gw = gateway()
        .config(file)
        .env("SLUICE_ADMIN_KEY", "env-key-0123456789")
        .admin_key("flag-key-0123456789");
    assert_eq!(keys(&gw.start().await).await, ["flag-key-0123456789"]);
    let gw = gateway()
        .config(file)
        .env("SLUICE_ADMIN_KEY", "env-key-0123456789")
        .expect_admin_key("env-key-0123456789");
    assert_eq!(keys(&gw.start().await).await, ["env-key-0123456789"]);
    let gw = gateway()
        .config(file)
        .expect_admin_key("file-key-0123456789");
    let gw = gw.start().await;
    assert_eq!(keys(&gw).await, ["file-key-0123456789"]);
    assert!(
        !gw.data_dir().join("admin.key").exists(),
        "no key is generated when one is configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_alone_configures_everything() {
    let o = origin("a").start();
    let b = gateway().bare().expect_admin_key("file-key-0123456789");
    let data = b.root().join("from-file");
    let toml = format!(
        "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\ntls_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         metrics_listen = \"127.0.0.1:0\"\nadmin_key = \"file-key-0123456789\"\n",
        data.to_str().unwrap()
    );
    let gw = b.config(&toml).start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/f", "upstream": upstream(&[&o])}),
    )
    .await;
    assert_eq!(gw.get("/f").await.hit(), (200, Some("a")));
    assert!(
        data.is_dir() && std::fs::read_dir(&data).unwrap().count() > 0,
        "store lives in the configured data_dir"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_alone_configures_everything() {
    let b = gateway().bare().expect_admin_key("env-key-0123456789");
    let data = b.root().join("from-env");
    let gw = b
        .env("SLUICE_DATA_DIR", data.to_str().unwrap())
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .env("SLUICE_TLS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("SLUICE_METRICS_LISTEN", "127.0.0.1:0")
        .env("SLUICE_ADMIN_KEY", "env-key-0123456789")
        .start()
        .await;
    assert_eq!(gw.admin().get("routes").await.status, 200);
    assert!(data.is_dir(), "store lives in SLUICE_DATA_DIR");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_precedence_flag_over_env_over_file() {
    // The losing sources name a port that is already taken: the gateway only starts if the winner is used.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().to_string();
    let file = format!("listen = \"{taken}\"\n");
    let gw = gateway()
        .bare()
        .config(&file)
        .env("SLUICE_LISTEN", &taken)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--admin-listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
    let gw = gw.start().await;
    assert_ne!(gw.http_addr().to_string(), taken);
    let gw = gateway()
        .bare()
        .config(&file)
        .env("SLUICE_LISTEN", "127.0.0.1:0")
        .args([
            "--data-dir",
            "data",
            "--admin-listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ]);
    let gw = gw.start().await;
    assert_ne!(gw.http_addr().to_string(), taken);
}

#[test]
fn bad_listen_address_fails_fast_with_a_clear_error() {
    let (code, out) = run(
        &[
            "serve",
            "--data-dir",
            "d",
            "--admin-key",
            "k-0123456789abcdef",
            "--listen",
            "not-an-address",
        ],
        Duration::from_secs(10),
    );
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}:\n{out}");
    assert!(
        out.contains("not-an-address") || out.contains("listen"),
        "says what is wrong:\n{out}"
    );
}

#[test]
fn port_in_use_fails_fast_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out) = run(
        &[
            "serve",
            "--data-dir",
            "d",
            "--admin-key",
            "k-0123456789abcdef",
            "--listen",
            &addr,
            "--admin-listen",
            "127.0.0.1:0",
            "--tls-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(10),
    );
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}:\n{out}");
    assert!(out.contains(&addr), "names {addr}:\n{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_exits_zero() {
    let o = origin("slow").start();
    let mut gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/slow", "upstream": upstream(&[&o])}),
    )
    .await;
    let addr = gw.http_addr();
    let slow = tokio::spawn(send(
        gw.request(reqwest::Method::GET, "/slow")
            .header("x-delay-ms", "1000"),
    ));
    o.wait_for_arrivals(1, Duration::from_secs(2)).await;
    gw.terminate();
    let r = slow.await.unwrap();
    assert_eq!(r.hit(), (200, Some("slow")), "in-flight request completed");
    let status = gw.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "listener closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_new_connections_while_draining() {
    let o = origin("slow").start();
    let mut gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/slow", "upstream": upstream(&[&o])}),
    )
    .await;
    let addr = gw.http_addr();
    let slow = tokio::spawn(send(
        gw.request(reqwest::Method::GET, "/slow")
            .header("x-delay-ms", "1500"),
    ));
    o.wait_for_arrivals(1, Duration::from_secs(2)).await;
    gw.terminate();
    eventually(
        "new connections refused while draining",
        Duration::from_secs(1),
        || async { tokio::net::TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert_eq!(slow.await.unwrap().status, 200);
    assert!(gw.wait_exit(Duration::from_secs(10)).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_connection_load_is_not_lost() {
    // A busy gateway accepts connections all the time; a SIGTERM arriving meanwhile must still stop it.
    let o = origin("a").start();
    let mut gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "1",
        json!({"uri": "/x", "upstream": upstream(&[&o])}),
    )
    .await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (addr, url, stop) = (gw.http_addr(), gw.url("/x"), stop.clone());
            tokio::spawn(async move {
                let c = client();
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    // New connections all the time (most just connect and go), some real requests.
                    for _ in 0..20 {
                        drop(tokio::net::TcpStream::connect(addr).await);
                    }
                    let _ = try_send(c.get(&url)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.terminate();
    let exited =
        tokio::time::timeout(Duration::from_secs(8), gw.wait_exit(Duration::from_secs(9))).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for t in load {
        t.await.unwrap();
    }
    let Ok(status) = exited else {
        let logs = gw.logs();
        let shutdown: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains("sluice::server"))
            .collect();
        panic!(
            "sluice still running 8 s after SIGTERM under load; its server log:\n{}",
            shutdown.join("\n")
        );
    };
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_exits_zero() {
    let mut gw = gateway().start().await;
    gw.interrupt();
    let status = gw.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_emits_json_lines() {
    let gw = gateway().args(["--log-format", "json"]).start().await;
    let line = gw.wait_for_log("listening", Duration::from_secs(1)).await;
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert!(
        v.to_string().contains("\"http\"") || v.to_string().contains("admin"),
        "{v}"
    );
    assert_eq!(gw.admin().get("routes").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_proxied_request_gets_an_access_log_line() {
    let o = origin("a").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "acc-route-7",
        json!({"uri": "/acc", "upstream": upstream(&[&o])}),
    )
    .await;
    send(
        gw.request(reqwest::Method::GET, "/acc")
            .header("x-status", "418"),
    )
    .await;
    let mut line = String::new();
    eventually(
        "an access log line with route id and status",
        Duration::from_secs(2),
        || {
            line = gw
                .logs()
                .lines()
                .find(|l| l.contains("acc-route-7") && l.contains("418"))
                .unwrap_or("")
                .into();
            let found = !line.is_empty();
            async move { found }
        },
    )
    .await;
    assert!(
        line.contains(&o.node()) || line.contains(&o.addr().port().to_string()),
        "names the upstream: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_tells_complete_from_aborted_responses() {
    use futures_util::StreamExt;
    let o = origin("a").body("0123456789").start();
    let gw = gateway().start().await;
    gw.put_ok(
        "routes",
        "full",
        json!({"uri": "/full", "upstream": upstream(&[&o])}),
    )
    .await;
    gw.put_ok(
        "routes",
        "cut",
        json!({"uri": "/cut", "upstream": upstream(&[&o])}),
    )
    .await;
    assert_eq!(gw.get("/full").await.text(), "0123456789");
    let mut line = String::new();
    eventually("access line for /full", Duration::from_secs(2), || {
        line = gw
            .logs()
            .lines()
            .find(|l| l.contains("/full") && l.contains("200"))
            .unwrap_or("")
            .into();
        let found = !line.is_empty();
        async move { found }
    })
    .await;
    assert!(
        line.contains(r#""complete":true"#),
        "a fully delivered response: {line}"
    );

    let r = gw
        .request(reqwest::Method::GET, "/cut")
        .header("x-drip", "20:100")
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body); // the client goes away mid-body
    eventually("access line for /cut", Duration::from_secs(3), || {
        line = gw
            .logs()
            .lines()
            .find(|l| l.contains("/cut"))
            .unwrap_or("")
            .into();
        let found = !line.is_empty();
        async move { found }
    })
    .await;
    assert!(
        line.contains(r#""complete":false"#),
        "an aborted response: {line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_and_proxy_are_separate_listeners() {
    let gw = gateway().start().await;
    assert_ne!(gw.http_addr(), gw.admin_addr());
    let r = gw.get("/apisix/admin/routes").await;
    assert_eq!(
        r.status, 404,
        "the admin API is not reachable through the proxy port"
    );
    assert!(gw.admin_addr().ip().is_loopback());
}
