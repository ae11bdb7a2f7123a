//! The JSON API the page reads, and the routes of the page's own files.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/info` | mode (`coordinator` or `view`), whether retry/cancel are allowed |
//! | `GET /api/jobs` | every job's [`JobView`] |
//! | `GET /api/jobs/{job}` | one job's [`JobView`] and, on the coordinator, its `status --json` |
//! | `GET /api/jobs/{job}/series` | the chart points |
//! | `GET /api/jobs/{job}/spec` | the job spec, secrets redacted |
//! | `GET /api/jobs/{job}/rows` | a page of committed rows or rejects ([`RowQuery`]) |
//! | `GET /api/workers` | the fleet's heartbeats (coordinator) |
//! | `GET /api/failures` | failed shards of every job (coordinator) |
//! | `POST /api/jobs/{job}/retry`, `/cancel` | `rubricmill retry` / `cancel`; bearer token |

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rubricmill_cluster::{Cluster, FailedShard, RunningShard};
use rubricmill_core::{JobSpec, MarkerSummary};
use rubricmill_runtime::RuntimeError;
use rubricmill_runtime::distributed;
use rubricmill_store::JobStore;
use serde::Serialize;
use serde_json::{Value, json};

use crate::jobs::JobView;
use crate::rows::{self, RowQuery};
use crate::series::{self, SamplePoint};
use crate::{AppState, Backend, UiError, assets, auth};

/// An error answer: a status and a JSON body `{"error": "..."}` with secrets redacted.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<UiError> for ApiError {
    fn from(error: UiError) -> Self {
        let status = match &error {
            UiError::UnknownJob(_) | UiError::Runtime(RuntimeError::UnknownJob(_)) => {
                StatusCode::NOT_FOUND
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(%error, "ui request failed");
        }
        Self::new(status, error.to_string())
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> Self {
        UiError::from(error).into()
    }
}

impl From<rubricmill_store::StoreError> for ApiError {
    fn from(error: rubricmill_store::StoreError) -> Self {
        UiError::from(error).into()
    }
}

impl From<rubricmill_cluster::ClusterError> for ApiError {
    fn from(error: rubricmill_cluster::ClusterError) -> Self {
        UiError::from(RuntimeError::from(error)).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = rubricmill_core::secret::redact_secrets(&self.message).into_owned();
        (self.status, Json(json!({ "error": message }))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The UI's routes over `state`.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/api/info", get(info))
        .route("/api/jobs", get(jobs))
        .route("/api/jobs/{job}", get(job))
        .route("/api/jobs/{job}/series", get(job_series))
        .route("/api/jobs/{job}/spec", get(job_spec))
        .route("/api/jobs/{job}/rows", get(job_rows))
        .route("/api/jobs/{job}/retry", post(retry))
        .route("/api/jobs/{job}/cancel", post(cancel))
        .route("/api/workers", get(workers))
        .route("/api/failures", get(failures))
        .with_state(state)
}

/// What the page needs to know before anything else.
#[derive(Debug, Serialize)]
pub struct Info {
    pub mode: &'static str,
    /// Retry and cancel are allowed (a token is configured and the source is the cluster).
    pub writable: bool,
    pub version: &'static str,
}

async fn info(State(state): State<AppState>) -> Json<Info> {
    let cluster = matches!(state.backend, Backend::Cluster { .. });
    Json(Info {
        mode: if cluster { "coordinator" } else { "view" },
        writable: cluster && state.token.is_some(),
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// What the UI knows of a job's output folder: planned shards and marker summaries.
#[derive(Debug)]
pub(crate) struct StoredJob {
    planned: u64,
    summaries: Vec<MarkerSummary>,
}

/// How long a reading of a job folder's markers serves requests before it is read again: the
/// jobs page refreshes every few seconds and every rows page needs the markers.
const STORED_JOB_TTL: Duration = Duration::from_secs(5);

/// The last reading of each job folder.
#[derive(Debug, Default)]
pub(crate) struct StoredJobs(Mutex<HashMap<String, (Instant, Arc<StoredJob>)>>);

impl StoredJobs {
    /// The plan's shard count and the commit marker summaries of the job at `store`, read
    /// only (the UI leaves the job folder as it found it), at most [`STORED_JOB_TTL`] old.
    async fn get(&self, store: &JobStore) -> Result<Arc<StoredJob>, ApiError> {
        let key = store.url();
        if let Some((read_at, job)) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && read_at.elapsed() < STORED_JOB_TTL
        {
            return Ok(Arc::clone(job));
        }
        let planned = store.load_manifest().await?.map_or(0, |m| m.shard_count);
        // The store's reader is not `Send`, so it runs on a blocking thread of its own.
        let reader = store.clone();
        let handle = tokio::runtime::Handle::current();
        let summaries =
            tokio::task::spawn_blocking(move || handle.block_on(reader.summaries(false)))
                .await
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
        let job = Arc::new(StoredJob { planned, summaries });
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (Instant::now(), Arc::clone(&job)));
        Ok(job)
    }
}

fn the_job<'a>(spec: &'a JobSpec, job: &str) -> Result<&'a JobSpec, ApiError> {
    if spec.name == job {
        Ok(spec)
    } else {
        Err(UiError::UnknownJob(job.to_owned()).into())
    }
}

async fn cluster_spec(cluster: &Cluster, job: &str) -> Result<JobSpec, ApiError> {
    match cluster.job(job).await? {
        Some(record) => Ok(record.spec().clone()),
        None => Err(UiError::UnknownJob(job.to_owned()).into()),
    }
}

async fn jobs(State(state): State<AppState>) -> ApiResult<Vec<JobView>> {
    match &state.backend {
        Backend::Cluster {
            cluster,
            samples,
            pauses,
        } => {
            let mut views = Vec::new();
            for status in distributed::jobs_status(cluster).await? {
                let spec = cluster_spec(cluster, &status.job).await?;
                let points = samples.points(&status.job);
                views.push(JobView::from_status(
                    &status,
                    &spec,
                    &points,
                    pauses.snapshot(),
                ));
            }
            Ok(Json(views))
        }
        Backend::Store { store, spec } => {
            let stored = state.stored.get(store).await?;
            let points = series::series_from_summaries(&stored.summaries);
            Ok(Json(vec![JobView::from_summaries(
                spec,
                stored.planned,
                &stored.summaries,
                &points,
            )]))
        }
    }
}

/// One job: its figures and, from the cluster, the status `rubricmill status --json` prints.
#[derive(Debug, Serialize)]
pub struct JobDetail {
    pub view: JobView,
    pub status: Option<Value>,
}

async fn job(State(state): State<AppState>, Path(job): Path<String>) -> ApiResult<JobDetail> {
    match &state.backend {
        Backend::Cluster {
            cluster,
            samples,
            pauses,
        } => {
            let status = distributed::job_status(cluster, &job).await?;
            let spec = cluster_spec(cluster, &job).await?;
            let view =
                JobView::from_status(&status, &spec, &samples.points(&job), pauses.snapshot());
            Ok(Json(JobDetail {
                view,
                status: serde_json::to_value(&status).ok(),
            }))
        }
        Backend::Store { store, spec } => {
            let spec = the_job(spec, &job)?;
            let stored = state.stored.get(store).await?;
            let points = series::series_from_summaries(&stored.summaries);
            Ok(Json(JobDetail {
                view: JobView::from_summaries(spec, stored.planned, &stored.summaries, &points),
                status: None,
            }))
        }
    }
}

async fn job_series(
    State(state): State<AppState>,
    Path(job): Path<String>,
) -> ApiResult<Vec<SamplePoint>> {
    let points = match &state.backend {
        Backend::Cluster { samples, .. } => samples.points(&job),
        Backend::Store { store, spec } => {
            the_job(spec, &job)?;
            series::series_from_summaries(&state.stored.get(store).await?.summaries)
        }
    };
    Ok(Json(series::thin(points)))
}

async fn job_spec(State(state): State<AppState>, Path(job): Path<String>) -> ApiResult<Value> {
    let spec = match &state.backend {
        Backend::Cluster { cluster, .. } => cluster_spec(cluster, &job).await?,
        Backend::Store { spec, .. } => the_job(spec, &job)?.clone(),
    };
    Ok(Json(crate::redact::redacted_spec(&spec)))
}

async fn job_rows(
    State(state): State<AppState>,
    Path(job): Path<String>,
    Query(query): Query<RowQuery>,
) -> ApiResult<rows::RowPage> {
    let store = match &state.backend {
        Backend::Cluster { cluster, .. } => {
            let spec = cluster_spec(cluster, &job).await?;
            JobStore::open(&spec.output.url, &job)?
        }
        Backend::Store { store, spec } => {
            the_job(spec, &job)?;
            store.clone()
        }
    };
    let stored = state.stored.get(&store).await?;
    Ok(Json(
        rows::page(&store, &job, &stored.summaries, &query).await?,
    ))
}

/// A worker as the workers page shows it.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    pub id: String,
    pub host: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub beat_at: DateTime<Utc>,
    pub live: bool,
    pub capacity: u32,
    pub draining: bool,
    pub in_flight: Vec<RunningShard>,
}

/// The fleet.
#[derive(Debug, Serialize)]
pub struct Fleet {
    /// A heartbeat older than this counts the worker as lost.
    pub heartbeat_ttl_s: f64,
    pub workers: Vec<WorkerView>,
}

async fn workers(State(state): State<AppState>) -> ApiResult<Fleet> {
    let Backend::Cluster { cluster, .. } = &state.backend else {
        return Ok(Json(Fleet {
            heartbeat_ttl_s: 0.0,
            workers: Vec::new(),
        }));
    };
    let ttl = cluster.settings().heartbeat_ttl;
    let now = Utc::now();
    let mut workers: Vec<WorkerView> = cluster
        .workers()
        .await?
        .into_iter()
        .map(|beat| WorkerView {
            live: beat.is_live(ttl, now),
            id: beat.id,
            host: beat.host,
            version: beat.version,
            started_at: beat.started_at,
            beat_at: beat.beat_at,
            capacity: beat.capacity,
            draining: beat.draining,
            in_flight: beat.in_flight,
        })
        .collect();
    workers.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(Fleet {
        heartbeat_ttl_s: ttl.as_secs_f64(),
        workers,
    }))
}

async fn failures(State(state): State<AppState>) -> ApiResult<Vec<FailedShard>> {
    let Backend::Cluster { cluster, .. } = &state.backend else {
        return Ok(Json(Vec::new()));
    };
    let mut failed = Vec::new();
    for record in cluster.jobs().await? {
        failed.extend(cluster.failures(&record.name).await?);
    }
    failed.sort_by(|a, b| (&a.job, &a.shard).cmp(&(&b.job, &b.shard)));
    Ok(Json(failed))
}

/// The cluster, when the request may change it.
fn writable<'a>(state: &'a AppState, headers: &HeaderMap) -> Result<&'a Cluster, ApiError> {
    if let Err(refusal) = auth::check(state.token.as_deref(), headers) {
        return Err(ApiError::new(StatusCode::FORBIDDEN, refusal.message()));
    }
    match &state.backend {
        Backend::Cluster { cluster, .. } => Ok(cluster),
        Backend::Store { .. } => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "rubricmill view is read-only",
        )),
    }
}

async fn retry(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Value> {
    let cluster = writable(&state, &headers)?;
    let queued = distributed::retry(cluster, &job).await?;
    tracing::info!(job = %job, queued, "ui queued failed shards again");
    Ok(Json(json!({ "job": job, "queued": queued })))
}

async fn cancel(
    State(state): State<AppState>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Value> {
    let cluster = writable(&state, &headers)?;
    let purged = distributed::cancel(cluster, &job).await?;
    tracing::info!(job = %job, purged, "ui cancelled job");
    Ok(Json(json!({ "job": job, "purged": purged })))
}
