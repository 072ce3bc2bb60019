//! lintel's HTTP server: the admin API, decisions, door opening, the event log, and the
//! operational endpoints. The handlers are thin: input is checked here, the store writes,
//! the directory keeps the decision index in step, and the core decides.

mod api;
mod auth;
pub mod cobot;
mod controllers;
mod listener;
pub mod lockcloud;
pub mod lookup;
mod notify;
pub mod osdp;
pub mod problem;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use lintel_store::Store;

pub use cobot::CobotConfig;
pub use lintel_service::{Directory, LimiterConfig, secrets, validate};
pub use listener::HttpConfig;
pub use lockcloud::LockCloudConfig;
pub use lookup::LookupConfig;
pub use notify::{SmsConfig, SmtpConfig};
pub use osdp::OsdpConfig;

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
    /// The coworking membership platform, when `[cobot]` is configured.
    pub cobot: Option<CobotConfig>,
    /// Where invitations are mailed from.
    pub smtp: Option<SmtpConfig>,
    /// The SMS gateway invitations are texted through.
    pub sms: Option<SmsConfig>,
    /// A lock vendor's cloud, when `[lockcloud]` is configured.
    pub lockcloud: Option<LockCloudConfig>,
    /// The badge identity lookup, when `[lookup]` is configured (its route is the operator's).
    pub lookup: Option<LookupConfig>,
    /// The OSDP readers, when `[osdp]` is configured.
    pub osdp: Option<OsdpConfig>,
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    services: lintel_service::Services,
    /// MQTT door controllers, when `[mqtt]` is configured.
    controllers: Option<controllers::Controllers>,
    cobot: Option<cobot::Cobot>,
    lockcloud: Option<lockcloud::LockCloud>,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    config: ServerConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] lintel_store::StoreError),
    #[error(transparent)]
    Service(#[from] lintel_service::ServiceError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("[lockcloud] is not usable: {0}")]
    LockCloud(#[from] lintel_connectors::lockcloud::CloudError),
    #[error("[cobot] is not usable: {0}")]
    Cobot(#[from] lintel_connectors::cobot::CobotError),
    #[error(transparent)]
    Mqtt(#[from] lintel_doors::mqtt::MqttError),
    #[error("[osdp] is not usable: {0}")]
    Osdp(#[from] lintel_doors::osdp::OsdpError),
}

impl AppState {
    /// Builds the services for `role` and the HTTP front-end over them.
    pub async fn new(store: Store, config: ServerConfig, role: lintel_service::Role) -> Result<Self, ServeError> {
        let services = lintel_service::Services::start(store, config.services.clone(), role).await?;
        let cobot = config.cobot.clone().map(cobot::Cobot::new).transpose()?;
        let lockcloud = config.lockcloud.clone().map(lockcloud::LockCloud::new).transpose()?;
        let controllers = services.doors.links().mqtt.clone().map(controllers::Controllers::new);
        Ok(Self {
            inner: Arc::new(Inner {
                services,
                controllers,
                cobot,
                lockcloud,
                metrics: api::ops::metrics_handle(),
                config,
            }),
        })
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

    /// `work`'s outcome, or `None` when the server begins to shut down first.
    pub(crate) async fn unless_stopping<T>(&self, work: impl Future<Output = T>) -> Option<T> {
        self.inner.services.workers.unless_stopping(work).await
    }

    /// Runs background work that shutdown waits for (within its grace).
    pub(crate) fn spawn_worker(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.inner.services.workers.spawn(work);
    }

    pub fn router(&self) -> Router {
        let (router, openapi) = api::router().split_for_parts();
        let openapi = Arc::new(openapi);
        router
            .merge(ui::router(self))
            .merge(lookup::router(self))
            .route("/openapi.json", axum::routing::get(move || api::ops::openapi(openapi.clone())))
            .fallback(api::ops::not_found)
            .method_not_allowed_fallback(api::ops::method_not_allowed)
            .layer(DefaultBodyLimit::max(self.inner.config.max_body_bytes))
            .with_state(self.clone())
    }
}

/// The MQTT door controllers with their list versions (for `lintel controllers`).
pub async fn controllers_overview(
    state: &AppState,
) -> Result<Vec<lintel_proto::controller::Controller>, lintel_store::StoreError> {
    controllers::list(state).await
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
    if state.inner.cobot.is_some() {
        cobot::spawn_workers(state.clone());
    }
    if state.inner.lockcloud.is_some() {
        lockcloud::spawn_workers(state.clone());
    }
    let link_events = state.services().link_events.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    if let Some(events) = link_events {
        controllers::spawn(state.clone(), events);
    }
    if state.inner.config.smtp.is_some() || state.inner.config.sms.is_some() {
        notify::spawn_sender(state.clone());
    }
    if let Some(osdp) = state.inner.config.osdp.clone() {
        osdp::spawn(state.clone(), osdp).await?;
    }
    let http_config = state.inner.config.http;
    let workers = &state.inner.services.workers;
    let http = listener::Http::new(http_config, descriptors, workers.stopping_token());
    tracing::info!(%addr, descriptors, max_connections = http.max_connections(), "lintel is ready");
    println!("lintel listening on http://{addr}");
    http.accept_until(listener, state.router(), shutdown).await;

    let began = tokio::time::Instant::now();
    let deadline = began + http_config.shutdown_grace;
    workers.stop();
    http.drain(deadline).await;
    state.services().stop(deadline).await;
    tracing::info!(took_ms = began.elapsed().as_millis() as u64, "lintel stopped");
    Ok(())
}
