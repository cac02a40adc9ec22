//! `gateway()`: the real `sluice` binary, started with a fresh temporary data dir and ephemeral ports.
//!
//! By default it runs `sluice serve --data-dir <tmp>/data --listen 127.0.0.1:0 --tls-listen 127.0.0.1:0
//! --admin-listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0 --admin-key <key>` with no `SLUICE_*` or `RUST_LOG`
//! inherited from the test's environment, then waits for the `listening` log lines of the `http` and `admin`
//! listeners to learn the bound addresses. stdout and stderr are drained continuously (a full pipe would block
//! the gateway) into a buffer that [`Gateway::logs`] and [`Gateway::wait_for_log`] read. The process is killed
//! on drop; if the test is panicking, the tail of its log is printed first.

use crate::admin::Admin;
use crate::client::{client, send, Resp};
use serde_json::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The `sluice` binary: `$SLUICE_BIN`, else `<CARGO_TARGET_DIR or workspace/target>/debug/sluice`.
pub fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        return PathBuf::from(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace dir")
        .to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if Path::new(&t).is_absolute() => PathBuf::from(t),
        Some(t) => workspace.join(t),
        None => workspace.join("target"),
    };
    target.join("debug").join("sluice")
}

fn checked_bin() -> PathBuf {
    let bin = sluice_bin();
    assert!(
        bin.is_file(),
        "sluice binary not found at {}: build it first with `cargo build -p sluice --bins` \
         (or point SLUICE_BIN at it)",
        bin.display()
    );
    bin
}

/// Starts describing a gateway.
pub fn gateway() -> GatewayBuilder {
    let root = tempfile::Builder::new()
        .prefix("sluice-test-")
        .tempdir()
        .expect("temp dir");
    let data_dir = root.path().join("data");
    GatewayBuilder {
        root,
        data_dir,
        args: Vec::new(),
        envs: Vec::new(),
        key: KeyMode::Flag("sluice-test-key-0123456789".into()),
        bare: false,
        required: vec!["http".into(), "admin".into(), "https".into()],
    }
}

#[derive(Clone, Debug)]
enum KeyMode {
    /// Passed as `--admin-key`.
    Flag(String),
    /// Known to the test but supplied some other way (env, config file); nothing passed by the builder.
    Known(String),
    /// Nothing given: the gateway generates `<data-dir>/admin.key`; the harness reads it after start.
    Generated,
}

pub struct GatewayBuilder {
    root: tempfile::TempDir,
    data_dir: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    key: KeyMode,
    bare: bool,
    required: Vec<String>,
}

impl GatewayBuilder {
    /// The temporary directory that holds the data dir and any config file (removed with the gateway).
    pub fn root(&self) -> &Path {
        self.root.path()
    }
    /// The data dir the harness passes (or, with [`Self::bare`], the one the test's config must name).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// Use this admin key, passed as `--admin-key`.
    pub fn admin_key(mut self, key: &str) -> Self {
        self.key = KeyMode::Flag(key.into());
        self
    }
    /// Pass no key: the test supplies `key` some other way (env or config file) and the admin client uses it.
    pub fn expect_admin_key(mut self, key: &str) -> Self {
        self.key = KeyMode::Known(key.into());
        self
    }
    /// Pass no key anywhere: the gateway must generate `<data-dir>/admin.key`; the admin client uses its content.
    pub fn generated_admin_key(mut self) -> Self {
        self.key = KeyMode::Generated;
        self
    }
    /// Pass only `serve`, the key flag (if any) and what the test adds: no data dir or listen flags.
    /// The child's working directory is the temp root, so defaults like `./sluice-data` stay inside it.
    pub fn bare(mut self) -> Self {
        self.bare = true;
        self
    }
    /// Extra command-line argument(s) after `serve`.
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }
    /// An environment variable for the child.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    /// Writes `toml` to `<root>/sluice.toml` and passes `--config` with its path.
    pub fn config(mut self, toml: &str) -> Self {
        let path = self.root.path().join("sluice.toml");
        std::fs::write(&path, toml).expect("write config");
        self.args.push("--config".into());
        self.args.push(path.into());
        self
    }
    /// Also wait for this listener's `listening` line (e.g. `"metrics"`), besides `http` and `admin`.
    pub fn wait_for_listener(mut self, name: &str) -> Self {
        self.required.push(name.into());
        self
    }

    /// Spawns the binary and waits until the `http` and `admin` listeners are bound.
    pub async fn start(self) -> Gateway {
        std::fs::create_dir_all(self.root.path()).expect("root");
        let mut gw = Gateway {
            root: self.root,
            data_dir: self.data_dir,
            args: self.args,
            envs: self.envs,
            key_mode: self.key,
            bare: self.bare,
            required: self.required,
            child: None,
            logs: Arc::new(Mutex::new(Vec::new())),
            past_logs: Vec::new(),
            listeners: HashMap::new(),
            key: None,
            http: client(),
        };
        gw.spawn().await;
        gw
    }
}

/// A running `sluice serve`.
pub struct Gateway {
    root: tempfile::TempDir,
    data_dir: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(String, String)>,
    key_mode: KeyMode,
    bare: bool,
    required: Vec<String>,
    child: Option<Child>,
    logs: Arc<Mutex<Vec<String>>>,
    past_logs: Vec<String>,
    listeners: HashMap<String, SocketAddr>,
    key: Option<String>,
    http: reqwest::Client,
}

/// Finds `listener=<name>` and `addr=<ip:port>` in a `listening` log line, text (quotes optional, ANSI colours
/// stripped) or JSON (fields anywhere in the object).
pub fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let line = strip_ansi(line);
    if !line.contains("listening") {
        return None;
    }
    if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
        let l = find_key(&v, "listener")?;
        let a = find_key(&v, "addr")?;
        return Some((l, a.parse().ok()?));
    }
    let l = field(&line, "listener")?;
    let a = field(&line, "addr")?;
    Some((l, a.parse().ok()?))
}

fn find_key(v: &Value, key: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(key) {
                return Some(match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
            }
            m.values().find_map(|x| find_key(x, key))
        }
        Value::Array(a) => a.iter().find_map(|x| find_key(x, key)),
        _ => None,
    }
}

fn field(line: &str, name: &str) -> Option<String> {
    let pat = format!("{name}=");
    let mut from = 0;
    // The field name must start a word (so `addr=` does not match inside `local_addr=`).
    let start = loop {
        let i = line[from..].find(&pat)? + from;
        let prev = line[..i].chars().next_back();
        if prev.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
            break i + pat.len();
        }
        from = i + pat.len();
    };
    let rest = &line[start..];
    let value = if let Some(q) = rest.strip_prefix('"') {
        &q[..q.find('"')?]
    } else {
        rest.split(|c: char| c.is_whitespace() || c == ',' || c == '}')
            .next()?
    };
    Some(value.to_string())
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ params final-byte(0x40..=0x7e)
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn drain(src: impl Read + Send + 'static, logs: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(src);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
                    logs.lock().unwrap().push(line);
                }
            }
        }
    });
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGTERM: i32 = 15;

impl Gateway {
    async fn spawn(&mut self) {
        let bin = checked_bin();
        let mut cmd = Command::new(&bin);
        cmd.arg("serve");
        if !self.bare {
            cmd.arg("--data-dir").arg(&self.data_dir);
            for flag in [
                "--listen",
                "--tls-listen",
                "--admin-listen",
                "--metrics-listen",
            ] {
                cmd.arg(flag).arg("127.0.0.1:0");
            }
        }
        if let KeyMode::Flag(k) = &self.key_mode {
            cmd.arg("--admin-key").arg(k);
        }
        cmd.args(&self.args);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("SLUICE_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env_remove("RUST_LOG");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd.current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        self.logs = Arc::new(Mutex::new(Vec::new()));
        drain(child.stdout.take().unwrap(), self.logs.clone());
        drain(child.stderr.take().unwrap(), self.logs.clone());
        self.child = Some(child);
        self.listeners.clear();

        let start = Instant::now();
        loop {
            for line in self.logs.lock().unwrap().iter() {
                if let Some((name, addr)) = parse_listening(line) {
                    self.listeners.insert(name, addr);
                }
            }
            if self.required.iter().all(|l| self.listeners.contains_key(l)) {
                break;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                tokio::time::sleep(Duration::from_millis(100)).await; // let the drain threads finish
                panic!(
                    "sluice exited ({status}) before listening; args {:?}\n--- log ---\n{}",
                    self.args,
                    self.logs()
                );
            }
            if start.elapsed() > START_TIMEOUT {
                panic!(
                    "sluice did not log `listening` for {:?} within {START_TIMEOUT:?} (found {:?})\n--- log ---\n{}",
                    self.required,
                    self.listeners,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        self.key = match &self.key_mode {
            KeyMode::Flag(k) | KeyMode::Known(k) => Some(k.clone()),
            KeyMode::Generated => {
                let path = self.data_dir.join("admin.key");
                let k = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                    panic!(
                        "no admin key given, so {} should exist: {e}\n--- log ---\n{}",
                        path.display(),
                        self.logs()
                    )
                });
                Some(k.trim().to_string())
            }
        };
    }

    /// Address of the HTTP proxy listener.
    pub fn http_addr(&self) -> SocketAddr {
        self.listeners["http"]
    }
    /// Address of the HTTPS proxy listener.
    pub fn https_addr(&self) -> SocketAddr {
        self.listeners["https"]
    }
    /// Address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners["admin"]
    }
    /// Address of any listener that logged `listening` (`http`, `admin`, `https`, `metrics`).
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.get(name).copied()
    }
    /// The admin key the harness uses.
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("")
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn root(&self) -> &Path {
        self.root.path()
    }
    /// The child's pid (while running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway not running").id()
    }
    /// Peak resident set size (`VmHWM`) of the gateway process, in KiB.
    pub fn vm_hwm_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// `http://<http listener><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http_addr(), path)
    }
    /// A request to the proxy listener on this gateway's shared HTTP/1.1 client.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path))
    }
    /// GET `path` through the proxy.
    pub async fn get(&self, path: &str) -> Resp {
        send(self.request(reqwest::Method::GET, path)).await
    }

    /// Admin client with the gateway's key.
    pub fn admin(&self) -> Admin {
        Admin::new(self.admin_addr(), self.key.clone())
    }
    /// PUT `/apisix/admin/<res>/<id>`, asserting success; returns the reply's `value`.
    #[track_caller]
    pub fn put_ok(
        &self,
        res: &str,
        id: &str,
        body: Value,
    ) -> impl std::future::Future<Output = Value> {
        let admin = self.admin();
        let (res, id) = (res.to_string(), id.to_string());
        let caller = std::panic::Location::caller();
        async move {
            let r = admin.put(&res, &id, body.clone()).await;
            assert!(
                r.is_success(),
                "PUT {res}/{id} (at {caller}) failed: {} {}\nbody: {body}",
                r.status,
                r.text
            );
            r.value().clone()
        }
    }

    /// PUT route `id` on `uri` to `origin` with this `plugins` map, asserting success.
    pub async fn route_to(&self, id: &str, uri: &str, origin: &crate::Origin, plugins: Value) {
        let body = serde_json::json!({
            "uri": uri,
            "upstream": crate::upstream(&[origin]),
            "plugins": plugins,
        });
        self.put_ok("routes", id, body).await;
    }

    /// Everything the current and previous processes logged (stdout and stderr), ANSI colours stripped.
    pub fn logs(&self) -> String {
        let mut all = self.past_logs.clone();
        all.extend(self.logs.lock().unwrap().iter().cloned());
        all.join("\n")
    }
    /// Waits until a log line of the current process contains `needle`; returns that line.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(l) = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return l.clone();
            }
            assert!(
                start.elapsed() < timeout,
                "no log line containing {needle:?} within {timeout:?}\n--- log ---\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM (does not wait).
    pub fn terminate(&self) {
        self.signal(SIGTERM);
    }
    /// Sends SIGINT (does not wait).
    pub fn interrupt(&self) {
        self.signal(SIGINT);
    }
    /// Sends SIGKILL (does not wait).
    pub fn kill9(&self) {
        self.signal(SIGKILL);
    }
    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                kill(c.id() as i32, sig);
            }
        }
    }
    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        let child = self.child.as_mut().expect("gateway not running");
        loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "sluice did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    /// SIGTERM and wait (10 s) for exit.
    pub async fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait_exit(Duration::from_secs(10)).await
    }

    fn retire(&mut self) {
        let logs = std::mem::take(&mut *self.logs.lock().unwrap());
        self.past_logs.extend(logs);
        self.past_logs.push("----- restart -----".into());
        self.child = None;
    }

    /// Graceful stop (SIGTERM, must exit 0), then start again on the same data dir (new ports).
    pub async fn restart(&mut self) {
        let status = self.stop().await;
        assert!(
            status.success(),
            "sluice exited with {status} on SIGTERM\n{}",
            self.logs()
        );
        self.retire();
        self.spawn().await;
    }
    /// SIGKILL (no chance to flush), then start again on the same data dir.
    pub async fn crash_and_restart(&mut self) {
        self.kill9();
        self.wait_exit(Duration::from_secs(10)).await;
        self.retire();
        self.spawn().await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(80)..];
            eprintln!("--- sluice log (last {} lines) ---", tail.len());
            for l in tail {
                eprintln!("{l}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_json_and_coloured_listening_lines() {
        let text = "2026-11-23T05:40:00.123456Z  INFO sluice::server: listening listener=\"http\" addr=127.0.0.1:38123";
        assert_eq!(
            parse_listening(text),
            Some(("http".into(), "127.0.0.1:38123".parse().unwrap()))
        );
        let bare = "INFO listening listener=admin addr=127.0.0.1:9180 other=1";
        assert_eq!(
            parse_listening(bare),
            Some(("admin".into(), "127.0.0.1:9180".parse().unwrap()))
        );
        let json = r#"{"timestamp":"x","level":"INFO","fields":{"message":"listening","listener":"metrics","addr":"127.0.0.1:1"}}"#;
        assert_eq!(
            parse_listening(json),
            Some(("metrics".into(), "127.0.0.1:1".parse().unwrap()))
        );
        let colour = "\x1b[32m INFO\x1b[0m listening \x1b[3mlistener\x1b[0m\x1b[2m=\x1b[0m\"https\" \x1b[3maddr\x1b[0m\x1b[2m=\x1b[0m127.0.0.1:5";
        assert_eq!(
            parse_listening(colour),
            Some(("https".into(), "127.0.0.1:5".parse().unwrap()))
        );
        assert_eq!(
            parse_listening("listening local_addr=1.2.3.4:5 listener=http"),
            None
        );
        assert_eq!(
            parse_listening("started addr=127.0.0.1:1 listener=http"),
            None
        );
    }
}
