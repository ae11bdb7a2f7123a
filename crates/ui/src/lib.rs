//! rubricmill's web UI: a small page compiled into the binary (HTML, CSS and plain JavaScript,
//! no frontend build, nothing fetched from the internet) and the JSON API it reads.
//!
//! Two sources feed it:
//! - the cluster, when the coordinator serves it (`rubricmill coordinator --ui-addr`): jobs,
//!   workers and failures straight from the cluster's buckets through the same functions as
//!   `rubricmill status`, `retry` and `cancel`, and charts from samples taken every few seconds
//!   into an in-memory ring;
//! - one job's output folder, when `rubricmill view JOB.toml` serves it: the job's figures and
//!   charts come from its commit markers and progress log, read only.
//!
//! Either way the dataset viewer pages committed rows straight from the Parquet parts that commit
//! markers reference. The UI is read-only unless `RUBRICMILL_UI_TOKEN` is set: then retry and
//! cancel are POST endpoints that want it as a bearer token (without it they answer 403).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use rubricmill_cluster::Cluster;
use rubricmill_core::JobSpec;
use rubricmill_http::HttpServer;
use rubricmill_store::JobStore;
use tokio::task::JoinHandle;

mod api;
mod assets;
mod auth;
mod jobs;
mod redact;
mod rows;
mod series;

pub use jobs::{JobView, UsageView};
pub use redact::redacted_spec;
pub use rows::{RowPage, RowQuery};
pub use series::{SamplePoint, SeriesRing};

/// The environment variable holding the token that retry and cancel want.
pub const TOKEN_ENV: &str = "RUBRICMILL_UI_TOKEN";
/// How often the coordinator's UI samples every job for its charts, unless told otherwise.
pub const DEFAULT_SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Samples kept per job (an hour at the default interval).
pub const SAMPLES_KEPT: usize = 720;

/// Why the UI could not start or answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    /// The HTTP endpoint could not be bound.
    #[error(transparent)]
    Http(#[from] rubricmill_http::HttpError),
    /// The job's output could not be opened or read.
    #[error("reading the job's output: {0}")]
    Store(#[from] rubricmill_store::StoreError),
    /// The cluster could not be read.
    #[error("reading the cluster: {0}")]
    Runtime(#[from] rubricmill_runtime::RuntimeError),
    /// A part could not be decoded.
    #[error("decoding {part}: {message}")]
    Decode {
        /// The part, relative to the job folder.
        part: String,
        /// What went wrong.
        message: String,
    },
    /// The job is not known here.
    #[error("unknown job {0:?}")]
    UnknownJob(String),
}

/// Settings of the UI.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// The token retry and cancel want; `None` makes the UI read-only.
    pub token: Option<String>,
    /// How often the coordinator's UI samples its jobs for the charts.
    pub sample_every: Duration,
}

impl Default for UiOptions {
    fn default() -> Self {
        Self {
            token: None,
            sample_every: DEFAULT_SAMPLE_EVERY,
        }
    }
}

impl UiOptions {
    /// The default settings with the token from `RUBRICMILL_UI_TOKEN` (unset or empty: none).
    pub fn from_env() -> Self {
        Self {
            token: std::env::var(TOKEN_ENV)
                .ok()
                .filter(|t| !t.trim().is_empty()),
            ..Self::default()
        }
    }
}

/// Where the UI's figures come from.
#[derive(Clone)]
pub(crate) enum Backend {
    /// The cluster (the coordinator's UI).
    Cluster {
        cluster: Box<Cluster>,
        samples: Arc<SeriesRing>,
        pauses: Arc<series::PauseTally>,
    },
    /// One job's output folder (`rubricmill view`).
    Store { store: JobStore, spec: Box<JobSpec> },
}

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) backend: Backend,
    pub(crate) token: Option<Arc<str>>,
    /// Recent readings of job folders' markers.
    pub(crate) stored: Arc<api::StoredJobs>,
}

/// The UI of one job's output folder, read only: its router.
pub fn view_router(spec: &JobSpec) -> Result<Router, UiError> {
    let store = JobStore::open(&spec.output.url, &spec.name)?;
    let state = AppState {
        backend: Backend::Store {
            store,
            spec: Box::new(spec.clone()),
        },
        token: None,
        stored: Arc::default(),
    };
    Ok(api::router(state))
}

/// The coordinator's UI: its router and the tasks that sample jobs and count rate-limit pauses
/// for it, which stop when the returned [`UiTasks`] is dropped.
pub async fn coordinator_router(
    cluster: Cluster,
    options: &UiOptions,
) -> Result<(Router, UiTasks), UiError> {
    let samples = Arc::new(SeriesRing::new(SAMPLES_KEPT));
    let pauses = Arc::new(series::PauseTally::default());
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(series::sample_forever(
        cluster.clone(),
        Arc::clone(&samples),
        options.sample_every,
    )));
    let tally = Arc::clone(&pauses);
    match rubricmill_cluster::subscribe_pauses(&cluster, move |_, pause| {
        tally.record(pause);
    })
    .await
    {
        Ok(task) => tasks.push(task),
        Err(error) => tracing::warn!(%error, "ui cannot follow rate-limit pauses"),
    }
    let state = AppState {
        backend: Backend::Cluster {
            cluster: Box::new(cluster),
            samples,
            pauses,
        },
        token: options.token.as_deref().map(Arc::from),
        stored: Arc::default(),
    };
    Ok((api::router(state), UiTasks(tasks)))
}

/// Background tasks of the coordinator's UI; dropping this stops them.
#[derive(Debug)]
pub struct UiTasks(Vec<JoinHandle<()>>);

impl Drop for UiTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A running UI endpoint.
#[derive(Debug)]
pub struct UiServer {
    http: HttpServer,
    _tasks: Option<UiTasks>,
}

impl UiServer {
    /// Serves the coordinator's UI at `addr`.
    pub async fn coordinator(
        addr: SocketAddr,
        cluster: Cluster,
        options: &UiOptions,
    ) -> Result<Self, UiError> {
        let (router, tasks) = coordinator_router(cluster, options).await?;
        let http = HttpServer::bind(addr, "ui", router).await?;
        Ok(Self {
            http,
            _tasks: Some(tasks),
        })
    }

    /// Serves one job's output, read only, at `addr`.
    pub async fn view(addr: SocketAddr, spec: &JobSpec) -> Result<Self, UiError> {
        let router = view_router(spec)?;
        let http = HttpServer::bind(addr, "ui", router).await?;
        Ok(Self { http, _tasks: None })
    }

    /// The address the UI listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.http.local_addr()
    }

    /// The URL to open in a browser.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr())
    }

    /// Stops serving (requests in flight get the HTTP server's grace period).
    pub async fn shutdown(self) {
        self.http.shutdown().await;
    }
}
