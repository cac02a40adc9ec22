//! `sluice serve`: open the store, build the first snapshot, bind the listeners, run until a signal,
//! then drain.
//!
//! Shutdown order: stop accepting, let in-flight requests finish (bounded by `--shutdown-timeout`),
//! then flush the store so nothing acknowledged is lost.

use crate::access_log::{AccessLog, DroppedCollector};
use crate::admin::{self, AdminKey, AdminState};
use crate::catalog::Catalog;
use crate::consumers::LiveConsumers;
use crate::log_sink::LogSinks;
use crate::metrics::{self, HttpMetrics, Metrics, PluginDefinedMetrics};
use crate::plugin::services::LocalCache;
use crate::plugin::{ArtifactCache, HostConfig, HostServices, PluginEngine, PluginRegistry};
use crate::proxy::{self, Conn, ProxyState};
use crate::settings::Settings;
use crate::snapshot::{ConfigSet, Live, Snapshot};
use crate::store::{ConfigStore, SledStore};
use crate::tls::TlsAcceptor;
use crate::upstream::Dns;
use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Longest time a client may take to send a request head (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

async fn bind(name: &'static str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {name} listener on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(listener = name, addr = %bound, "listening");
    Ok(listener)
}

type Stores = (Arc<dyn ConfigStore>, Arc<dyn ArtifactCache>);

fn open_store(settings: &Settings) -> anyhow::Result<Stores> {
    match settings.config_store.as_str() {
        "sled" => {
            std::fs::create_dir_all(&settings.data_dir)
                .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
            let store = SledStore::open(&settings.data_dir)
                .with_context(|| format!("opening the store in {}", settings.data_dir.display()))?;
            let artifacts = Arc::new(store.artifact_cache());
            Ok((Arc::new(store), artifacts))
        }
        other if other.starts_with("etcd://") => {
            anyhow::bail!("--config-store {other}: the etcd backend is not part of this build yet; use `sled`")
        }
        other => {
            anyhow::bail!("--config-store {other:?}: expected `sled` or `etcd://host:port/prefix`")
        }
    }
}

/// Starts the plugin engine and loads every stored plugin binary (from the compiled-artifact cache when
/// it holds this engine's build of it, so a restart does not recompile).
async fn load_plugins(
    settings: &Settings,
    store: &dyn ConfigStore,
    artifacts: Arc<dyn ArtifactCache>,
    consumers: Arc<LiveConsumers>,
    plugin_metrics: Arc<PluginDefinedMetrics>,
    log_sinks: Arc<LogSinks>,
) -> anyhow::Result<Catalog> {
    // One cached response may use a sixteenth of the cache (and never more than the host tees).
    let max_entry = (settings.cache_bytes / 16).max(64 << 10);
    let services = HostServices {
        consumers,
        cache: Arc::new(LocalCache::new(settings.cache_bytes, max_entry)),
        metrics: plugin_metrics,
        log_sinks,
        ..HostServices::local()
    };
    let engine = PluginEngine::new(HostConfig::default(), services)
        .map_err(|e| anyhow::anyhow!("starting the plugin engine: {e}"))?;
    let registry = Arc::new(PluginRegistry::new(engine, artifacts));
    for (name, bytes) in store
        .load_plugins()
        .await
        .context("loading stored plugins")?
    {
        let reg = Arc::clone(&registry);
        let n = name.clone();
        let loaded = tokio::task::spawn_blocking(move || reg.load(&n, &bytes)).await?;
        match loaded {
            Ok(p) => tracing::info!(
                plugin = %name,
                sha256 = %p.sha256(),
                from_cache = p.loaded_from_cache(),
                load_ms = p.load_time().as_secs_f64() * 1000.0,
                "wasm plugin loaded"
            ),
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "stored wasm plugin failed to load")
            }
        }
    }
    let registry = Arc::try_unwrap(registry)
        .map_err(|_| anyhow::anyhow!("plugin registry still shared after loading"))?;
    Ok(Catalog::new(registry))
}

/// Takes an accepted connection (with Nagle off: proxied writes are small and latency-bound). On an
/// accept error (out of file descriptors and the like) it backs off briefly instead of spinning.
async fn accepted_or_back_off(
    accepted: std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    match accepted {
        Ok((stream, client)) => {
            let _ = stream.set_nodelay(true);
            Some((stream, client))
        }
        Err(e) => {
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// Serves an axum app (admin API, metrics) on its own task until `stop` turns true.
fn serve_until_stopped(
    name: &'static str,
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(listener = name, error = %e, "listener failed");
        }
    })
}

/// SIGTERM and SIGINT, registered before any listener is bound: a signal that arrives after the
/// "listening" line but before the accept loop first polls must still mean "drain and exit", not the
/// default action of dying on the spot.
#[cfg(unix)]
struct ShutdownSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(ShutdownSignals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}

#[cfg(not(unix))]
struct ShutdownSignals;

#[cfg(not(unix))]
impl ShutdownSignals {
    fn install() -> anyhow::Result<Self> {
        Ok(ShutdownSignals)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut signals = ShutdownSignals::install()?;
    let (store, artifacts) = open_store(&settings)?;
    let consumers = Arc::new(LiveConsumers::default());
    let plugin_metrics = Arc::new(PluginDefinedMetrics::default());
    let log_sinks = Arc::new(LogSinks::new(Some(settings.plugin_log_dir.clone())));
    let catalog = Arc::new(
        load_plugins(
            &settings,
            store.as_ref(),
            artifacts,
            Arc::clone(&consumers),
            Arc::clone(&plugin_metrics),
            Arc::clone(&log_sinks),
        )
        .await?,
    );
    let objects = store.load_all().await.context("loading stored config")?;
    let count = objects.len();
    // Off the async workers: the first build compiles the built-in plugins the config uses.
    let cat = Arc::clone(&catalog);
    let snapshot = tokio::task::spawn_blocking(move || {
        Snapshot::build(ConfigSet::from_objects(objects), None, &cat)
    })
    .await?
    .context("the stored configuration does not validate")?;
    tracing::info!(objects = count, "configuration loaded");
    let live = Arc::new(Live::new(snapshot));
    consumers.bind(&live);

    std::fs::create_dir_all(&settings.data_dir)?;
    let (key, source) = AdminKey::resolve(settings.admin_key.clone(), &settings.data_dir)?;
    match source {
        admin::KeySource::Configured => {}
        admin::KeySource::File(p) => {
            tracing::info!(path = %p.display(), "admin key read from file")
        }
        admin::KeySource::Generated(p) => {
            tracing::warn!(path = %p.display(), "no admin key configured: generated one; send it as X-API-KEY")
        }
    }

    let proxy_listener = bind("http", settings.listen).await?;
    let admin_listener = bind("admin", settings.admin_listen).await?;
    let tls_listener = bind("https", settings.tls_listen).await?;
    let tls_acceptor = Arc::new(TlsAcceptor::new(Arc::clone(&live))?);
    let metrics_listener = match settings.metrics_listen {
        Some(addr) => Some(bind("metrics", addr).await?),
        None => {
            tracing::info!("metrics off: no /metrics, /status or /status/ready, nothing counted");
            None
        }
    };
    let tracer = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let t = crate::otel::Tracer::start(endpoint)?;
            tracing::info!(%endpoint, "exporting request spans over OTLP/HTTP");
            Some(Arc::new(t))
        }
        None => None,
    };
    let access_log = match settings.access_log.clone() {
        Some(target) => Some(Arc::new(
            AccessLog::start(target, settings.access_log_format.clone())
                .context("opening the access log")?,
        )),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http_metrics = None;
    let mut metrics_task = None;
    if let Some(listener) = metrics_listener {
        let http = Arc::new(HttpMetrics::new(Arc::clone(&live)));
        let mut exporter = Metrics::new(
            Arc::clone(&http),
            Arc::clone(&live),
            Arc::clone(&catalog),
            plugin_metrics,
        )
        .with_collector(Box::new(Arc::clone(&log_sinks)));
        if let Some(log) = &access_log {
            exporter = exporter.with_collector(Box::new(DroppedCollector(Arc::clone(log))));
        }
        let app = metrics::endpoint::router(Arc::new(exporter), Arc::clone(&store));
        metrics_task = Some(serve_until_stopped(
            "metrics",
            listener,
            app,
            stop_rx.clone(),
        ));
        http_metrics = Some(http);
    }
    let admin_state = Arc::new(AdminState::new(
        Arc::clone(&store),
        Arc::clone(&live),
        catalog,
        key,
    ));
    let admin_app = admin::router(admin_state);
    let admin_task = serve_until_stopped("admin", admin_listener, admin_app, stop_rx.clone());

    let state = Arc::new(ProxyState {
        live: Arc::clone(&live),
        dns: Dns::from_system(),
        metrics: http_metrics.clone(),
        access_log: access_log.clone(),
        tracer: tracer.clone(),
    });
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // The HTTPS listener serves with the same settings; its connections start on their own tasks, after the
    // handshake, so they get a shared copy.
    let tls_builder = Arc::new(builder.clone());
    loop {
        tokio::select! {
            accepted = proxy_listener.accept() => {
                let Some((stream, client)) = accepted_or_back_off(accepted).await else {
                    continue;
                };
                let local = stream.local_addr().unwrap_or(settings.listen);
                let conn = Conn { client, local, scheme: "http" };
                let state = Arc::clone(&state);
                let svc = service_fn(move |req| {
                    let state = Arc::clone(&state);
                    async move { Ok::<_, Infallible>(proxy::handle(state, conn, req).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let connection = graceful.watch(connection);
                let open = http_metrics.as_ref().map(|m| m.connection());
                tokio::spawn(async move {
                    let _open = open;
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "client connection ended with error");
                    }
                });
            }
            accepted = tls_listener.accept() => {
                let Some((stream, client)) = accepted_or_back_off(accepted).await else {
                    continue;
                };
                let local = stream.local_addr().unwrap_or(settings.tls_listen);
                let conn = Conn { client, local, scheme: "https" };
                let state = Arc::clone(&state);
                let acceptor = Arc::clone(&tls_acceptor);
                let builder = Arc::clone(&tls_builder);
                let watcher = graceful.watcher();
                let open = http_metrics.as_ref().map(|m| m.connection());
                // The handshake runs on the connection's own task so a slow client never stalls accepting.
                tokio::spawn(async move {
                    let _open = open;
                    let stream = match acceptor.accept(stream).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%client, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let svc = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(proxy::handle(state, conn, req).await) }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(error = %e, "client connection ended with error");
                    }
                });
            }
            () = signals.recv() => break,
        }
    }

    tracing::info!("shutting down: no new connections; draining in-flight requests");
    drop(proxy_listener);
    drop(tls_listener);
    let _ = stop_tx.send(true);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(settings.shutdown_timeout) => {
            tracing::warn!(timeout = ?settings.shutdown_timeout, "shutdown timeout reached; closing remaining connections");
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), admin_task).await;
    if let Some(task) = metrics_task {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    store.flush().await.context("flushing the store")?;
    if let Some(log) = access_log {
        // Lines of requests that finished during the drain are still queued.
        tokio::task::spawn_blocking(move || log.close(Duration::from_secs(2))).await?;
    }
    log_sinks.shutdown(Duration::from_secs(5)).await;
    if let Some(t) = tracer {
        // So are spans.
        tokio::task::spawn_blocking(move || t.shutdown(Duration::from_secs(2))).await?;
    }
    tracing::info!("stopped");
    Ok(())
}
