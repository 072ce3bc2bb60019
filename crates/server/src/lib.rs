//! lintel's HTTP server: the admin API, decisions, door opening, the event log, and the
//! operational endpoints. The handlers are thin: input is checked here, the store writes,
//! the directory keeps the decision index in step, and the core decides.

mod access_log;
mod api;
mod auth;
mod export;
mod listener;
pub mod problem;
mod proxies;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use lintel_store::Store;

use lintel_service::Directory;
pub use listener::HttpConfig;
pub use proxies::TrustedProxies;

/// Everything the server needs to know, resolved by the binary from flags, file and
/// environment: HTTP's own settings, the workflows' ([`lintel_service::Config`]), and the
/// integrations whose workflows still live here.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Timeouts, the connection limit and the shutdown grace.
    pub http: HttpConfig,
    pub services: lintel_service::Config,
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    services: lintel_service::Services,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    config: ServerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Service(#[from] lintel_service::ServiceError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
}

impl AppState {
    /// Builds the services for `role` and the HTTP front-end over them.
    pub async fn new(store: Store, config: ServerConfig, role: lintel_service::Role) -> Result<Self, ServeError> {
        let services = lintel_service::Services::start(store, config.services.clone(), role).await?;
        Ok(Self { inner: Arc::new(Inner { services, metrics: api::ops::metrics_handle(), config }) })
    }

    pub(crate) fn services(&self) -> &lintel_service::Services {
        &self.inner.services
    }

    pub(crate) fn directory(&self) -> &Arc<Directory> {
        &self.inner.services.directory
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.services.directory.store
    }

    /// Resolves when the server begins to shut down.
    pub(crate) fn stopping(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.services.workers.stopping()
    }

    pub fn router(&self) -> Router {
        let (router, mut openapi) = api::router().split_for_parts();
        api::add_common_responses(&mut openapi);
        let openapi = Arc::new(openapi);
        router
            .merge(ui::router(self))
            .merge(api::lookup::router(self))
            .route("/openapi.json", axum::routing::get(move || api::ops::openapi(openapi.clone())))
            .fallback(api::ops::not_found)
            .method_not_allowed_fallback(api::ops::method_not_allowed)
            .layer(DefaultBodyLimit::max(self.inner.config.max_body_bytes))
            .layer(axum::middleware::from_fn(access_log::access_log))
            .with_state(self.clone())
    }
}

/// Serves until `shutdown` resolves; prints the address it listens on once ready. Then
/// stops accepting, ends event streams, gives requests in flight and background workers
/// the grace to finish, and closes the store.
pub async fn serve(
    store: Store,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let descriptors = listener::raise_descriptor_limit();
    let listener =
        listener::bind(config.listen).map_err(|source| ServeError::Listen { addr: config.listen, source })?;
    let addr = listener.local_addr()?;
    let state = AppState::new(store, config, lintel_service::Role::Server).await?;
    state.services().spawn_workers().await?;
    let http_config = state.inner.config.http.clone();
    let workers = &state.inner.services.workers;
    let grace = http_config.shutdown_grace;
    let http = listener::Http::new(http_config, descriptors, workers.stopping_token());
    tracing::info!(%addr, descriptors, max_connections = http.max_connections(), "lintel is ready");
    println!("lintel listening on http://{addr}");
    http.accept_until(listener, state.router(), shutdown).await;

    let began = tokio::time::Instant::now();
    let deadline = began + grace;
    workers.stop();
    http.drain(deadline).await;
    state.services().stop(deadline).await;
    tracing::info!(took_ms = began.elapsed().as_millis() as u64, "lintel stopped");
    Ok(())
}
