//! Ferry's HTTP server: the REST API under `/api/v1`, health and metrics endpoints, and the
//! start-up sequence of a server process (data dir, master key, store, bootstrap token,
//! crash recovery).
//!
//! **Architecture Invariant:** this is the only crate that knows HTTP, and it keeps no state
//! between requests beyond what the engine and store hold.

mod api;
mod auth;
pub mod authz;
mod backend;
mod convert;
mod error;
mod extract;
mod metrics;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::Router;
use ferry_core::Actor;
use ferry_engine::datadir::KeySource;
pub use ferry_engine::{probe_sandbox, SandboxSupport};
use ferry_engine::{Engine, EngineConfig};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use auth::AccessConfig;
pub use error::ApiError;
pub use metrics::Metrics;

/// Shared by every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the server begins to shut down.
    pub shutdown: CancellationToken,
    /// Sessions, login throttling, trusted proxies.
    pub access: Arc<AccessConfig>,
}

impl AppState {
    pub fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/whoami", get(api::system::whoami))
        .route("/queue", get(api::system::queue))
        .route(
            "/projects",
            post(api::projects::projects_create).get(api::projects::projects_list),
        )
        .route(
            "/projects/{project}",
            get(api::projects::projects_get).patch(api::projects::projects_update),
        )
        .route(
            "/projects/{project}/pipelines",
            get(api::projects::pipelines_list),
        )
        .route("/projects/{project}/runs", post(api::runs::runs_create))
        .route("/runs", get(api::runs::runs_list))
        .route("/runs/{id}", get(api::runs::runs_get))
        .route("/runs/{id}/cancel", post(api::runs::runs_cancel))
        .route("/runs/{id}/approvals", post(api::runs::approvals_create))
        .route(
            "/runs/{id}/approvals/{environment}",
            get(api::delivery::approval_view),
        )
        .route("/runs/{id}/retry", post(api::delivery::runs_retry))
        .route("/projects/{project}/promote", post(api::delivery::promote))
        .route(
            "/projects/{project}/rollback",
            post(api::delivery::rollback),
        )
        .route(
            "/projects/{project}/deployments",
            get(api::delivery::deployments),
        )
        .route("/approvals", get(api::delivery::approvals_pending))
        .route("/events", get(api::events::events_list))
        .route("/events/stream", get(api::events::events_stream))
        .route("/audit", get(api::events::audit_list))
        .route("/runs/{id}/logs", get(api::logs::logs_get))
        .route("/runs/{id}/logs/stream", get(api::logs::logs_stream))
        .route(
            "/tokens",
            post(api::tokens::tokens_create).get(api::tokens::tokens_list),
        )
        .route("/tokens/{name}", delete(api::tokens::tokens_revoke))
        .route("/login", post(api::identity::login))
        .route("/logout", post(api::identity::logout))
        .route(
            "/users",
            get(api::identity::users_list).post(api::identity::users_create),
        )
        .route("/users/{name}", patch(api::identity::users_update))
        .route(
            "/teams",
            get(api::identity::teams_list).post(api::identity::teams_create),
        )
        .route(
            "/teams/{team}/members",
            post(api::identity::team_members_add),
        )
        .route(
            "/teams/{team}/members/{user}",
            delete(api::identity::team_members_remove),
        )
        .route(
            "/grants",
            get(api::identity::grants_list).post(api::identity::grants_create),
        )
        .route("/grants/revoke", post(api::identity::grants_revoke))
        .route(
            "/projects/{project}/waivers",
            post(api::waivers::waivers_create).get(api::waivers::waivers_list),
        )
        .route("/waivers/{id}", delete(api::waivers::waivers_revoke))
        .route("/states", get(api::states::states_list))
        .route(
            "/states/{project}/{environment}",
            get(api::states::state_show).delete(api::states::state_delete),
        )
        .route(
            "/states/{project}/{environment}/versions",
            get(api::states::state_versions),
        )
        .route(
            "/states/{project}/{environment}/raw",
            get(api::states::state_raw),
        )
        .route(
            "/states/{project}/{environment}/diff",
            get(api::states::state_diff),
        )
        .route(
            "/states/{project}/{environment}/lock",
            get(api::states::state_lock_info).delete(api::states::state_unlock),
        )
        .route(
            "/states/{project}/{environment}/rollback",
            post(api::states::state_rollback),
        )
        .route(
            "/states/{project}/{environment}/push",
            post(api::states::state_push).layer(axum::extract::DefaultBodyLimit::max(
                backend::MAX_STATE_BYTES,
            )),
        )
        .route(
            "/states/{project}/{environment}/retention",
            put(api::states::state_retention),
        )
        .route("/secrets", get(api::secrets::secrets_list))
        .route(
            "/secrets/{name}",
            put(api::secrets::secrets_set).delete(api::secrets::secrets_delete),
        )
        .route("/params", get(api::secrets::params_list))
        .route(
            "/params/{name}",
            get(api::secrets::params_get)
                .put(api::secrets::params_set)
                .delete(api::secrets::params_delete),
        )
        .route("/openapi.json", get(api::system::openapi));
    Router::new()
        .nest("/api/v1", api)
        .merge(backend::routes())
        .route("/healthz", get(api::system::healthz))
        .route("/readyz", get(api::system::readyz))
        .route("/metrics", get(api::system::metrics))
        // Every matched route passes the authorisation rules first (see `authz::RULES`).
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authz::authorise,
        ))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        // Extractor rejections (a body over its limit, a wrong content type) are plain text
        // in axum; every error Ferry answers is JSON.
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_context,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::internal("handler panicked").into_response()
        }))
        .with_state(state)
}

/// One span per request, a request id on every response, latency metrics, and the single
/// place where a 5xx's hidden cause is logged.
async fn request_context(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let request_id = hex::encode(rand::random::<[u8; 8]>());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().as_str().to_owned();
    let span = tracing::info_span!("http_request", %method, matched_path = %route, request_id = %request_id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if let Some(error::InternalError(cause)) =
        response.extensions().get::<error::InternalError>().cloned()
    {
        span.in_scope(
            || tracing::error!(error = %cause, status = status.as_u16(), "request failed"),
        );
        let body = ferry_api::ErrorBody {
            code: "internal".into(),
            message: "internal server error".into(),
            details: Vec::new(),
            request_id: Some(request_id.clone()),
        };
        response = (status, axum::Json(body)).into_response();
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    state
        .metrics
        .observe_http(&method, &route, status.as_u16(), started.elapsed());
    response
}

/// Everything `ferry server` needs, resolved by the binary from file, env and flags.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub master_key: KeySource,
    pub kill_grace: Duration,
    pub shutdown_grace: Duration,
    pub path_var: String,
    pub passthrough_env: Vec<(String, String)>,
    /// Sessions, login throttling, proxies and the first admin's password.
    pub access: AccessConfig,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Where runs' working directories go; `None`: `DATA_DIR-work` beside the data dir
    /// ([`default_work_dir`]). Never inside the data dir.
    pub work_dir: Option<PathBuf>,
    /// How actions are confined.
    pub sandbox: SandboxConfig,
    /// Git transports allowed for projects' repositories and the time limit of one git
    /// operation.
    pub git: ferry_engine::git::GitOptions,
}

/// `--insecure-no-sandbox` and the extra paths to hide from actions.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Run actions unconfined (the operator's explicit, logged choice).
    pub insecure_no_sandbox: bool,
    /// Paths no action may see, besides the data dir, the work dir, the master key file and
    /// the TLS key (which the server adds itself).
    pub hidden: Vec<PathBuf>,
    /// Directories every action may also write, such as a shared download cache.
    pub writable: Vec<PathBuf>,
}

/// `DATA_DIR-work`, beside the data dir: on the same disk, out of the data dir's backups
/// and out of every action's sight.
pub fn default_work_dir(data_dir: &Path) -> PathBuf {
    let mut name = data_dir
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "ferry".into());
    name.push("-work");
    data_dir.with_file_name(name)
}

/// The PEM files of `--tls-cert` and `--tls-key`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Written at start so local CLI calls find the server without flags.
pub fn server_url_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server.url")
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Open(#[from] ferry_engine::datadir::DataDirError),
    #[error("{0}")]
    Unsafe(String),
    #[error("recovery: {0}")]
    Recovery(#[from] ferry_engine::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
}

pub use ferry_engine::datadir::{
    admin_password_path, admin_token_path, audit_checkpoint_path, db_path,
    finish_interrupted_rotation, next_key_path,
};

/// A started server: bound, recovered, ready to serve.
pub struct Server {
    pub state: AppState,
    pub listener: tokio::net::TcpListener,
    pub url: String,
    config: ServerConfig,
    /// Present when Ferry terminates TLS itself.
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
}

/// Loads the certificate chain and key of `--tls-cert`/`--tls-key` (rustls with *ring*).
async fn load_tls(files: &TlsFiles) -> Result<axum_server::tls_rustls::RustlsConfig, StartError> {
    // Several servers in one process (tests) share the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            StartError::Tls(format!(
                "{} / {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })
}

/// Opens the data dir, key and store, creates the bootstrap admin token on first start,
/// recovers runs left by a previous process, and binds the listener.
pub async fn start(config: ServerConfig) -> Result<Server, StartError> {
    // Everything Ferry creates from here on is its own: 0600 files, 0700 directories, by
    // creation rather than by a chmod afterwards. Actions inherit the mask.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let dir = &config.data_dir;
    create_private_dir(dir).map_err(|source| StartError::DataDir {
        path: dir.clone(),
        source,
    })?;
    tighten_data_dir(dir)?;
    let work_dir = config
        .work_dir
        .clone()
        .unwrap_or_else(|| default_work_dir(dir));
    check_work_dir(dir, &work_dir)?;
    create_private_dir(&work_dir).map_err(|source| StartError::DataDir {
        path: work_dir.clone(),
        source,
    })?;
    tighten_data_dir(&work_dir)?;
    let opened = ferry_engine::datadir::open(
        dir,
        &config.master_key,
        config.access.admin_password.as_deref(),
    )
    .await?;
    if opened.key_created {
        tracing::info!(key_id = %opened.key_id, "created a new master key");
    }
    if opened.wrote_admin_token {
        tracing::info!(path = %admin_token_path(dir).display(), "wrote the bootstrap admin token");
    }
    if opened.wrote_admin_password {
        tracing::info!(path = %admin_password_path(dir).display(), "wrote the first admin's password");
    }
    // Bind first: actions reach the state backend at this address.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: config.listen,
            source,
        })?;
    let local = listener.local_addr()?;
    let tls = match &config.tls {
        Some(files) => Some(load_tls(files).await?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{local}");
    // Actions reach the state backend at the public URL when one is set (a certificate is
    // issued for that name, not for the listener's address).
    let backend_url = config
        .access
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_owned())
        .unwrap_or_else(|| url.clone());
    let sandbox = if config.sandbox.insecure_no_sandbox {
        tracing::warn!("--insecure-no-sandbox: actions run UNCONFINED; code from any commit can read the data dir, the master key and every secret");
        ferry_engine::SandboxMode::Disabled
    } else {
        let mut hidden = config.sandbox.hidden.clone();
        if let KeySource::File(path) = &config.master_key {
            hidden.push(path.clone());
        }
        if let Some(tls) = &config.tls {
            hidden.push(tls.key.clone());
        }
        ferry_engine::SandboxMode::Enforce {
            hidden,
            writable: config.sandbox.writable.clone(),
        }
    };
    let engine_config = EngineConfig {
        data_dir: dir.clone(),
        work_dir,
        sandbox,
        kill_grace: config.kill_grace,
        path_var: config.path_var.clone(),
        passthrough_env: config.passthrough_env.clone(),
        backend_url,
        git: config.git.clone(),
    };
    let engine = Engine::new(engine_config, opened);
    let metrics = Arc::new(Metrics::default());
    let observer_metrics = metrics.clone();
    engine.set_action_observer(Arc::new(move |kind, outcome, elapsed| {
        observer_metrics.observe_action(kind, outcome, elapsed)
    }));
    let sandbox = engine.sandbox_status();
    if sandbox.actions_allowed {
        tracing::info!(sandbox = sandbox.mode, detail = %sandbox.detail, "actions are confined");
    } else {
        tracing::error!(detail = %sandbox.detail, "actions cannot be sandboxed on this host: every action will be refused (start with --insecure-no-sandbox to run them unconfined)");
    }
    engine.recover().await?;
    std::fs::write(server_url_path(dir), format!("{url}\n"))?;
    let state = AppState {
        engine,
        metrics,
        shutdown: CancellationToken::new(),
        access: Arc::new(config.access.clone()),
    };
    Ok(Server {
        state,
        listener,
        url,
        config,
        tls,
    })
}

impl Server {
    /// Serves until `stop` fires, then shuts down gracefully: no new requests or runs,
    /// running actions get the grace period, then are terminated and recorded.
    pub async fn serve(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let token = state.shutdown.clone();
        let trigger = token.clone();
        tokio::spawn(async move {
            stop.await;
            trigger.cancel();
        });
        let pruner = tokio::spawn(prune_state_versions(state.clone()));
        let router = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let http: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>> =
            match self.tls {
                None => Box::pin(std::future::IntoFuture::into_future(
                    axum::serve(self.listener, router)
                        .with_graceful_shutdown(async move { token.cancelled().await }),
                )),
                Some(tls) => {
                    let handle = axum_server::Handle::new();
                    let stopper = handle.clone();
                    tokio::spawn(async move {
                        token.cancelled().await;
                        stopper.graceful_shutdown(None);
                    });
                    Box::pin(
                        axum_server::from_tcp_rustls(self.listener.into_std()?, tls)
                            .handle(handle)
                            .serve(router),
                    )
                }
            };
        let engine = state.engine.clone();
        let grace = self.config.shutdown_grace;
        let engine_stop = {
            let token = state.shutdown.clone();
            async move {
                token.cancelled().await;
                engine.shutdown(grace).await;
            }
        };
        let (http_result, ()) = tokio::join!(http, engine_stop);
        let _ = pruner.await;
        state.engine.close().await;
        http_result
    }
}

/// How often state retention runs (and once at start).
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Applies every state's retention hourly until shutdown. A failed pass is logged and
/// retried at the next tick; it never stops the server.
async fn prune_state_versions(state: AppState) {
    let actor = Actor::system("retention");
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let store = &state.engine;
        if let Err(e) = store
            .prune_state_versions(&actor, chrono::Utc::now(), state.engine.data_dir())
            .await
        {
            tracing::warn!(error = %e, "state retention pass failed");
        }
    }
}

/// The work dir may be neither the data dir nor inside it, nor contain it: actions see
/// their run's directory and never the data dir.
fn check_work_dir(data_dir: &Path, work_dir: &Path) -> Result<(), StartError> {
    let real = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let (data, work) = (real(data_dir), real(work_dir));
    if work.starts_with(&data) || data.starts_with(&work) {
        return Err(StartError::Unsafe(format!(
            "the work dir {} and the data dir {} overlap; runs' working directories must live outside the data dir (set work_dir elsewhere)",
            work_dir.display(),
            data_dir.display()
        )));
    }
    Ok(())
}

/// A data dir made by hand (or by an older Ferry) may be readable by every local user:
/// refuse one owned by someone else, then make it and everything in it Ferry's alone —
/// directories 0700, files stripped of every group and other bit (0644 becomes 0600; a git
/// object's 0444 becomes 0400) — without following links.
fn tighten_data_dir(dir: &Path) -> Result<(), StartError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(StartError::Unsafe(format!(
            "{} is owned by uid {}, not by this server's uid {me}; refusing to use another user's directory",
            dir.display(),
            meta.uid()
        )));
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)?;
        let mode = meta.permissions().mode() & 0o7777;
        let want = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            mode & 0o700
        } else {
            continue; // links and sockets: their targets are not ours to change
        };
        if mode != want {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(want))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}
