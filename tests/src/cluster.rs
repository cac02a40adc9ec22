//! Real `etcd` and `redis-server` processes for cluster tests, and a TCP proxy that can cut one node off.
//!
//! Each process runs from its Debian binary (`/usr/bin/etcd`, `/usr/bin/redis-server`; `scripts/setup.sh`
//! installs them) in a temporary directory, on loopback ports picked free just before start, and is killed
//! on drop (its log tail is printed when the test is panicking). [`Etcd`] talks to etcd through its JSON
//! gateway (`/v3/kv/...`), so tests read etcd independently of the gateway's own client.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A loopback port nobody listens on right now (bound, read, released). A race with another process is
/// possible in principle; the process start then fails loudly.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("pick a free port")
}

fn checked_binary(path: &str) -> &str {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: run scripts/setup.sh (it installs the Debian packages etcd-server and redis-server)"
    );
    path
}

/// A child process with its log file, killed on drop.
struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name,
            child: Some(child),
            log,
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- {} log (tail) ---\n{}", self.name, self.log_tail());
        }
    }
}

/// Polls `ready` every 50 ms until it holds; panics with the process log after [`READY_TIMEOUT`] or when
/// the process exits.
async fn wait_ready<F, Fut>(proc: &mut Proc, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !ready().await {
        if let Some(status) = proc.exited() {
            panic!(
                "{} exited ({status}) while starting:\n{}",
                proc.name,
                proc.log_tail()
            );
        }
        assert!(
            start.elapsed() < READY_TIMEOUT,
            "{} not ready within {READY_TIMEOUT:?}:\n{}",
            proc.name,
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A one-member etcd cluster.
pub struct Etcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    proc: Proc,
    http: reqwest::Client,
}

impl Etcd {
    pub async fn start() -> Etcd {
        let dir = tempfile::Builder::new()
            .prefix("sluice-etcd-")
            .tempdir()
            .expect("temp dir");
        let (client_port, peer_port) = (free_port(), free_port());
        let proc = Self::spawn(dir.path(), client_port, peer_port);
        let mut etcd = Etcd {
            dir,
            client_port,
            peer_port,
            proc,
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client"),
        };
        etcd.wait_ready().await;
        etcd
    }

    fn spawn(dir: &Path, client: u16, peer: u16) -> Proc {
        let mut cmd = Command::new(checked_binary("/usr/bin/etcd"));
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        cmd.arg("--name")
            .arg("test")
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(format!("test={peer_url}"))
            // Tests compact by hand; no automatic compaction behind their back.
            .arg("--auto-compaction-retention")
            .arg("0");
        Proc::spawn("etcd", cmd, dir.join("etcd.log"))
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/health", self.client_port);
        let http = self.http.clone();
        wait_ready(&mut self.proc, || {
            let request = http.get(&url).send();
            async move {
                match request.await {
                    Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["health"] == "true"),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    /// `host:port` of the client listener.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    /// `--config-store` value for a node that talks to this etcd directly.
    pub fn store_url(&self) -> String {
        format!("etcd://{}", self.addr())
    }

    /// SIGKILL: no goodbye to the watchers.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts again on the same data dir and ports.
    pub async fn restart(&mut self) {
        self.proc.kill();
        self.proc = Self::spawn(self.dir.path(), self.client_port, self.peer_port);
        self.wait_ready().await;
    }

    /// Replaced by an empty etcd on the same ports: a new history whose revisions start again from 1.
    pub async fn wipe_and_restart(&mut self) {
        self.proc.kill();
        std::fs::remove_dir_all(self.dir.path().join("data")).expect("remove etcd data");
        self.proc = Self::spawn(self.dir.path(), self.client_port, self.peer_port);
        self.wait_ready().await;
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let url = format!("http://127.0.0.1:{}/v3/{path}", self.client_port);
        let r = self
            .http
            .post(&url)
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("etcd {path}: {e}"));
        let status = r.status();
        let v: Value = r.json().await.expect("etcd JSON reply");
        assert!(status.is_success(), "etcd {path}: {status} {v}");
        v
    }

    /// The current revision.
    pub async fn revision(&self) -> i64 {
        let v = self
            .call(
                "kv/range",
                json!({"key": B64.encode("\0"), "count_only": true}),
            )
            .await;
        v["header"]["revision"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .expect("revision")
    }

    /// Every key under `prefix` with its value.
    pub async fn list(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let v = self
            .call(
                "kv/range",
                json!({"key": B64.encode(prefix), "range_end": B64.encode(end)}),
            )
            .await;
        let kvs = v["kvs"].as_array().cloned().unwrap_or_default();
        kvs.iter()
            .map(|kv| {
                let key = B64.decode(kv["key"].as_str().unwrap_or("")).expect("key");
                let value = B64
                    .decode(kv["value"].as_str().unwrap_or(""))
                    .expect("value");
                (String::from_utf8_lossy(&key).into_owned(), value)
            })
            .collect()
    }

    /// Writes one key directly (as another tool would, bypassing every node's admin API).
    pub async fn put(&self, key: &str, value: &str) {
        self.call(
            "kv/put",
            json!({"key": B64.encode(key), "value": B64.encode(value)}),
        )
        .await;
    }

    /// Compacts away all history before `revision`.
    pub async fn compact(&self, revision: i64) {
        self.call(
            "kv/compaction",
            json!({"revision": revision.to_string(), "physical": true}),
        )
        .await;
    }

    /// The digest of the configuration under `/apisix/` computed from etcd itself, the same way a node
    /// computes its own (`GET /apisix/admin/cluster/status`): SHA-256 over `<segment>/<id> <compact JSON>\n`
    /// lines sorted by `<segment>/<id>`, for the config kinds only.
    pub async fn config_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        const KINDS: [&str; 7] = [
            "routes",
            "services",
            "upstreams",
            "consumers",
            "ssls",
            "global_rules",
            "plugin_configs",
        ];
        let mut lines: Vec<(String, String)> = self
            .list("/apisix/")
            .await
            .into_iter()
            .filter_map(|(key, value)| {
                let rest = key.strip_prefix("/apisix/")?;
                let (kind, _) = rest.split_once('/')?;
                KINDS.contains(&kind).then(|| {
                    let v: Value = serde_json::from_slice(&value).expect("JSON in etcd");
                    (rest.to_string(), v.to_string())
                })
            })
            .collect();
        lines.sort();
        let mut hash = Sha256::new();
        for (key, json) in lines {
            hash.update(format!("{key} {json}\n"));
        }
        hex_lower(&hash.finalize())
    }
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A `redis-server`, optionally with a password, optionally a one-node Redis Cluster owning every slot.
pub struct Redis {
    dir: tempfile::TempDir,
    port: u16,
    password: Option<String>,
    cluster: bool,
    proc: Proc,
}

impl Redis {
    pub async fn start(password: Option<&str>) -> Redis {
        Self::start_with(password, false).await
    }

    /// Cluster mode with this one node holding all 16384 slots: what a client of `redis-cluster` meets.
    pub async fn start_cluster(password: Option<&str>) -> Redis {
        Self::start_with(password, true).await
    }

    async fn start_with(password: Option<&str>, cluster: bool) -> Redis {
        let dir = tempfile::Builder::new()
            .prefix("sluice-redis-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let password = password.map(str::to_string);
        let proc = Self::spawn(dir.path(), port, password.as_deref(), cluster);
        let mut redis = Redis {
            dir,
            port,
            password,
            cluster,
            proc,
        };
        redis.wait_ready().await;
        if cluster {
            let reply = redis.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
            assert!(reply.starts_with("+OK"), "ADDSLOTSRANGE: {reply}");
            let start = Instant::now();
            while !redis
                .command(&["CLUSTER", "INFO"])
                .contains("cluster_state:ok")
            {
                assert!(start.elapsed() < READY_TIMEOUT, "cluster never became ok");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        redis
    }

    fn spawn(dir: &Path, port: u16, password: Option<&str>, cluster: bool) -> Proc {
        let mut cmd = Command::new(checked_binary("/usr/bin/redis-server"));
        cmd.arg("--port")
            .arg(port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(dir)
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no");
        if let Some(p) = password {
            cmd.arg("--requirepass").arg(p);
        }
        if cluster {
            cmd.arg("--cluster-enabled")
                .arg("yes")
                .arg("--cluster-config-file")
                .arg(dir.join("nodes.conf"));
        }
        Proc::spawn("redis-server", cmd, dir.join("redis.log"))
    }

    async fn wait_ready(&mut self) {
        let (port, password) = (self.port, self.password.clone());
        wait_ready(&mut self.proc, || {
            let pong = raw_command(port, password.as_deref(), &["PING"])
                .is_ok_and(|r| r.starts_with("+PONG"));
            std::future::ready(pong)
        })
        .await;
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port` for `redis_cluster_nodes`.
    pub fn node(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Starts again on the same port (no data survives: persistence is off).
    pub async fn restart(&mut self) {
        self.proc.kill();
        self.proc = Self::spawn(
            self.dir.path(),
            self.port,
            self.password.as_deref(),
            self.cluster,
        );
        self.wait_ready().await;
    }

    /// Sends one command and returns the raw RESP reply (panics if Redis does not answer).
    pub fn command(&self, args: &[&str]) -> String {
        raw_command(self.port, self.password.as_deref(), args)
            .unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// [`Self::command`] in database `db`.
    pub fn command_in(&self, db: u32, args: &[&str]) -> String {
        let select = db.to_string();
        let reply = raw_commands(
            self.port,
            self.password.as_deref(),
            &[&["SELECT", &select], args],
        )
        .unwrap_or_else(|e| panic!("redis {args:?}: {e}"));
        reply
            .split_once("\r\n")
            .map_or(reply.clone(), |(_, r)| r.to_string())
    }

    /// SIGSTOP: connections stay open but nothing answers (what a hung server looks like).
    pub fn pause(&self) {
        self.proc.signal(SIGSTOP);
    }

    /// SIGCONT after [`Self::pause`].
    pub fn resume(&self) {
        self.proc.signal(SIGCONT);
    }
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;

impl Proc {
    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                kill(c.id() as i32, sig);
            }
        }
    }
}

/// One RESP exchange on a fresh connection (AUTH first when there is a password).
fn raw_command(port: u16, password: Option<&str>, args: &[&str]) -> std::io::Result<String> {
    raw_commands(port, password, &[args])
}

/// Several commands on one fresh connection (AUTH first when there is a password); the raw replies of
/// all of them but AUTH.
fn raw_commands(
    port: u16,
    password: Option<&str>,
    commands: &[&[&str]],
) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    let encode = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        out
    };
    let mut request = String::new();
    if let Some(p) = password {
        request.push_str(&encode(&["AUTH", p]));
    }
    for args in commands {
        request.push_str(&encode(args));
    }
    s.write_all(request.as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    Ok(match password {
        // Drop AUTH's `+OK\r\n`.
        Some(_) => reply
            .split_once("\r\n")
            .map_or(reply.clone(), |(_, r)| r.to_string()),
        None => reply,
    })
}

/// A TCP proxy in front of one address that can be cut (every connection dropped, new ones refused at
/// once) and restored: a node behind it loses etcd while everything else keeps it.
pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (c, k) = (Arc::clone(&cut), Arc::clone(&conns));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close at once
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut conns = k.lock().unwrap();
                conns.retain(|t| !t.is_finished());
                conns.push(task);
            }
        });
        TcpProxy {
            addr,
            cut,
            conns,
            accept,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every proxied connection and refuses new ones until [`Self::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
