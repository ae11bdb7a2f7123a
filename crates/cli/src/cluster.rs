//! The distributed-mode commands: `submit`, `coordinator`, `worker`, `status`, `retry` and
//! `cancel`, with their NATS connection and queue options. Secrets (NATS password and token)
//! are read from the environment only, so they never show up in a process listing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::args::parse_duration;
use anyhow::Context;
use clap::Args;
use rubricmill_cluster::{Cluster, Names, NatsOptions, QueueSettings};
use rubricmill_core::JobSpec;
use rubricmill_runtime::distributed::{self, JobStatus};
use rubricmill_runtime::{ContextOptions, PolicyFile, WorkerOptions, WorkerPolicy};
use rubricmill_telemetry::{Health, ProcessCollector, Registry};

/// How to reach NATS. Every option can also come from the environment.
#[derive(Args, Debug, Clone)]
pub struct NatsArgs {
    /// NATS server URLs, comma-separated.
    #[arg(
        long = "nats",
        env = "RUBRICMILL_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub servers: String,
    /// User name; the password is read from $RUBRICMILL_NATS_PASSWORD.
    #[arg(long = "nats-user", env = "RUBRICMILL_NATS_USER")]
    pub user: Option<String>,
    /// Credentials file (user JWT and nkey seed).
    #[arg(long = "nats-creds", env = "RUBRICMILL_NATS_CREDS")]
    pub creds: Option<PathBuf>,
    /// CA certificate that signed the servers' certificates.
    #[arg(long = "nats-ca", env = "RUBRICMILL_NATS_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate for mutual TLS (with --nats-key).
    #[arg(long = "nats-cert", env = "RUBRICMILL_NATS_CERT")]
    pub cert: Option<PathBuf>,
    /// Client key for mutual TLS.
    #[arg(long = "nats-key", env = "RUBRICMILL_NATS_KEY")]
    pub key: Option<PathBuf>,
    /// Require TLS.
    #[arg(long = "nats-tls", env = "RUBRICMILL_NATS_TLS")]
    pub tls: bool,
    /// Prefix of every subject, stream and bucket name (several deployments can share NATS).
    #[arg(
        long = "nats-prefix",
        env = "RUBRICMILL_NATS_PREFIX",
        default_value = "rubricmill"
    )]
    pub prefix: String,
}

/// Settings of the shard stream and consumer; `submit` and `coordinator` apply them.
#[derive(Args, Debug, Clone)]
pub struct QueueArgs {
    /// How long a shard may go without a heartbeat before it is delivered again.
    #[arg(long, env = "RUBRICMILL_ACK_WAIT", default_value = "60s", value_parser = parse_duration)]
    pub ack_wait: Duration,
    /// Deliveries of a shard before it is recorded as failed.
    #[arg(long, env = "RUBRICMILL_MAX_DELIVER", default_value_t = 4)]
    pub max_deliver: u32,
    /// Shards in flight across the whole fleet.
    #[arg(long, env = "RUBRICMILL_MAX_ACK_PENDING", default_value_t = 1024)]
    pub max_ack_pending: u32,
    /// JetStream replicas of the stream and buckets (3 on a NATS cluster).
    #[arg(long, env = "RUBRICMILL_REPLICAS", default_value_t = 1)]
    pub replicas: usize,
    /// How long a worker's heartbeat counts it as alive.
    #[arg(long, env = "RUBRICMILL_HEARTBEAT_TTL", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat_ttl: Duration,
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The job spec (TOML).
    pub job: PathBuf,
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    /// How often each running job is reconciled with its commit markers.
    #[arg(long, env = "RUBRICMILL_RECONCILE_EVERY", default_value = "10s", value_parser = parse_duration)]
    pub reconcile_every: Duration,
    /// How often each running job's commit markers are listed in full (also at start, before
    /// the idle sweep acts and before a job is marked complete); between listings, commits are
    /// counted from worker events.
    #[arg(long, env = "RUBRICMILL_FULL_RECONCILE_EVERY", default_value = "10m", value_parser = parse_duration)]
    pub full_reconcile_every: Duration,
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9090).
    #[arg(long, env = "RUBRICMILL_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Serve the web UI here (e.g. 127.0.0.1:8320); read-only unless $RUBRICMILL_UI_TOKEN is
    /// set, which retry and cancel then want as a bearer token.
    #[arg(long, env = "RUBRICMILL_UI_ADDR")]
    pub ui_addr: Option<SocketAddr>,
}

#[derive(Args, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Worker id (default: host name and a random suffix).
    #[arg(long, env = "RUBRICMILL_WORKER_ID")]
    pub id: Option<String>,
    /// Shards processed at once.
    #[arg(long, env = "RUBRICMILL_WORKER_SHARDS", default_value_t = 2)]
    pub shards: usize,
    /// Records of one shard in the pipeline at once.
    #[arg(long, env = "RUBRICMILL_WORKER_RECORDS", default_value_t = 16)]
    pub records: usize,
    /// After SIGTERM, how long shards in flight may finish before they are handed back.
    #[arg(long, env = "RUBRICMILL_DRAIN_TIMEOUT", default_value = "120s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Call the model even when the response cache has the answer.
    #[arg(long)]
    pub no_cache: bool,
    /// Used only to create the stream, consumer and buckets if this worker starts first; the
    /// coordinator's and submit's settings win.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Serve /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9090).
    #[arg(long, env = "RUBRICMILL_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// The worker policy: what submitted jobs may use of this worker. Without any, a job may name
/// no key variable and no endpoint (the simulated provider runs); the flags add to the file.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Policy file (TOML: api_key_env, llm_endpoints, inputs, outputs).
    #[arg(long = "policy", env = "RUBRICMILL_WORKER_POLICY")]
    pub file: Option<PathBuf>,
    /// A variable jobs may name as llm.api_key_env (repeatable).
    #[arg(long = "allow-key-env", value_name = "VAR")]
    pub key_env: Vec<String>,
    /// A URL prefix (or pattern with `*`) llm.base_url must fall under (repeatable).
    #[arg(long = "allow-endpoint", value_name = "URL")]
    pub endpoint: Vec<String>,
    /// A URL prefix every input must fall under (repeatable).
    #[arg(long = "allow-input", value_name = "URL")]
    pub input: Vec<String>,
    /// A URL prefix every output must fall under (repeatable).
    #[arg(long = "allow-output", value_name = "URL")]
    pub output: Vec<String>,
}

impl PolicyArgs {
    fn policy(&self) -> anyhow::Result<WorkerPolicy> {
        let file = match &self.file {
            Some(path) => PolicyFile::load(path)?,
            None => PolicyFile::default(),
        };
        let flags = PolicyFile {
            api_key_env: self.key_env.clone(),
            llm_endpoints: self.endpoint.clone(),
            inputs: (!self.input.is_empty()).then(|| self.input.clone()),
            outputs: (!self.output.is_empty()).then(|| self.output.clone()),
        };
        Ok(WorkerPolicy::new(file.merge(flags))?)
    }
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The job (default: every job).
    pub job: Option<String>,
    /// Redraw every two seconds.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub nats: NatsArgs,
}

#[derive(Args, Debug)]
pub struct JobArgs {
    /// The job name.
    pub job: String,
    #[command(flatten)]
    pub nats: NatsArgs,
}

impl NatsArgs {
    fn options(&self, role: &str) -> anyhow::Result<NatsOptions> {
        Names::validate(&self.prefix).map_err(|e| anyhow::anyhow!("--nats-prefix: {e}"))?;
        let secret = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let options = NatsOptions {
            user: self.user.clone(),
            password: secret("RUBRICMILL_NATS_PASSWORD"),
            token: secret("RUBRICMILL_NATS_TOKEN"),
            credentials_file: self.creds.clone(),
            tls_ca: self.ca.clone(),
            tls_cert: self.cert.clone(),
            tls_key: self.key.clone(),
            tls_required: self.tls,
            name: format!("rubricmill-{role}"),
            ..NatsOptions::for_servers(&self.servers)
        };
        options.check()?;
        Ok(options)
    }

    async fn open(
        &self,
        role: &str,
        settings: QueueSettings,
        configure: bool,
    ) -> anyhow::Result<Cluster> {
        let options = self.options(role)?;
        let cluster =
            Cluster::connect(&options, Names::new(&self.prefix), settings, configure).await?;
        Ok(cluster)
    }
}

impl QueueArgs {
    fn settings(&self) -> QueueSettings {
        QueueSettings {
            ack_wait: self.ack_wait,
            max_deliver: self.max_deliver.max(1),
            max_ack_pending: self.max_ack_pending.max(1),
            replicas: self.replicas.max(1),
            heartbeat_ttl: self.heartbeat_ttl,
        }
    }
}

pub async fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(&args.job)?;
    let cluster = args
        .nats
        .open("submit", args.queue.settings(), true)
        .await?;
    let summary = distributed::submit(&cluster, &spec).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "submitted job {}: {} shards planned, {} committed before, {} queued now, {} already queued",
            summary.job,
            summary.planned,
            summary.committed_before,
            summary.queued,
            summary.already_queued
        );
        println!(
            "output: {}",
            rubricmill_store::location::display_location(&summary.output_url)
        );
        println!("watch it with: rubricmill status {} --watch", summary.job);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs a long-lived role with its telemetry endpoint (when `addr` is given), until the role
/// returns; the endpoint stops after it.
async fn with_telemetry<F, Fut>(addr: Option<SocketAddr>, role: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce(Arc<Registry>, Arc<Health>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let registry = Registry::new("rubricmill");
    registry.collector(Box::new(ProcessCollector));
    let health = Health::new();
    let server = match addr {
        Some(addr) => Some(
            rubricmill_telemetry::serve(addr, registry.clone(), health.clone())
                .await
                .with_context(|| format!("--metrics-addr {addr}"))?,
        ),
        None => None,
    };
    let result = role(registry, health).await;
    if let Some(server) = server {
        server.shutdown().await;
    }
    result.map(|()| ExitCode::SUCCESS)
}

pub async fn coordinator(args: CoordinatorArgs) -> anyhow::Result<ExitCode> {
    with_telemetry(args.metrics_addr, |registry, health| async move {
        let cluster = args
            .nats
            .open("coordinator", args.queue.settings(), true)
            .await?;
        let options = distributed::CoordinatorOptions {
            reconcile_every: args.reconcile_every,
            full_reconcile_every: args.full_reconcile_every,
            ..Default::default()
        };
        let ui = match args.ui_addr {
            Some(addr) => {
                let options = rubricmill_ui::UiOptions::from_env();
                let server = rubricmill_ui::UiServer::coordinator(addr, cluster.clone(), &options)
                    .await
                    .with_context(|| format!("--ui-addr {addr}"))?;
                tracing::info!(url = %server.url(), writable = options.token.is_some(), "web ui serving");
                Some(server)
            }
            None => None,
        };
        let shutdown = crate::run::interrupted();
        let result =
            distributed::run_coordinator(cluster, options, registry, health, shutdown).await;
        if let Some(ui) = ui {
            ui.shutdown().await;
        }
        result?;
        Ok(())
    })
    .await
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    // A bad policy fails before the worker joins anything.
    let policy = args.policy.policy()?;
    with_telemetry(args.metrics_addr, |registry, health| async move {
        let cluster = args
            .nats
            .open("worker", args.queue.settings(), false)
            .await?;
        let id = args.id.clone().unwrap_or_else(default_worker_id);
        let mut worker = WorkerOptions::new(id);
        worker.shard_concurrency = args.shards.max(1);
        worker.record_concurrency = args.records.max(1);
        let options = distributed::ClusterWorkerOptions {
            worker,
            drain_timeout: args.drain_timeout,
            context: ContextOptions {
                no_cache: args.no_cache,
                ..ContextOptions::default()
            },
            policy,
        };
        let shutdown = crate::run::interrupted();
        distributed::run_worker(cluster, options, registry, health, shutdown).await?;
        Ok(())
    })
    .await
}

fn default_worker_id() -> String {
    let host = Some(distributed::hostname())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

pub async fn retry(args: JobArgs) -> anyhow::Result<ExitCode> {
    let cluster = args
        .nats
        .open("retry", QueueSettings::default(), false)
        .await?;
    let count = distributed::retry(&cluster, &args.job).await?;
    println!("job {}: {count} failed shards queued again", args.job);
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(args: JobArgs) -> anyhow::Result<ExitCode> {
    let cluster = args
        .nats
        .open("cancel", QueueSettings::default(), false)
        .await?;
    let purged = distributed::cancel(&cluster, &args.job).await?;
    println!(
        "job {} cancelled: {purged} queued shards removed; submit it again to resume",
        args.job
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let cluster = args
        .nats
        .open("status", QueueSettings::default(), false)
        .await?;
    loop {
        let statuses = match &args.job {
            Some(job) => vec![distributed::job_status(&cluster, job).await?],
            None => distributed::jobs_status(&cluster).await?,
        };
        if args.json {
            let value = match &args.job {
                Some(_) => serde_json::to_value(&statuses[0])?,
                None => serde_json::to_value(&statuses)?,
            };
            println!("{}", serde_json::to_string(&value)?);
        } else {
            if args.watch {
                print!("\x1b[2J\x1b[H");
            }
            if statuses.is_empty() {
                println!("no jobs submitted");
            }
            for status in &statuses {
                print!("{}", render_status(status));
            }
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

fn render_status(status: &JobStatus) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let state = match &status.reason {
        Some(reason) => format!("{} ({reason})", status.state),
        None => status.state.clone(),
    };
    let _ = writeln!(out, "job {}: {state}", status.job);
    let _ = writeln!(
        out,
        "  shards   {} planned: {} pending, {} running, {} committed, {} failed",
        status.planned,
        status.pending,
        status.running.len(),
        status.committed,
        status.failed.len()
    );
    match &status.progress {
        Some(progress) => {
            let _ = writeln!(
                out,
                "  output   {} rows, {} rejects from {} records",
                progress.rows, progress.rejects, progress.records
            );
            let usage = progress.paid();
            let _ = writeln!(
                out,
                "  llm      {} calls ({} cached, {} retried), {} tokens in, {} out, ${:.4}",
                usage.calls,
                usage.cache_hits,
                usage.retries,
                usage.tokens_in,
                usage.tokens_out,
                usage.cost_usd
            );
            if progress.uncommitted_attempts > 0 {
                let _ = writeln!(
                    out,
                    "           of which {} calls, ${:.4} by {} attempts that did not commit; {} more cut off on the wire (about ${:.4})",
                    progress.uncommitted.calls,
                    progress.uncommitted.cost_usd,
                    progress.uncommitted_attempts,
                    progress.cut_off.calls,
                    progress.cut_off.cost_usd
                );
            }
            if usage.batch_calls > 0 || progress.batches_pending > 0 {
                let _ = writeln!(
                    out,
                    "  batches  {} pending ({} calls), {} calls answered through batches, ${:.4} saved",
                    progress.batches_pending,
                    progress.batch_items_pending,
                    usage.batch_calls,
                    usage.batch_saved_usd
                );
            }
            if let Some(agreement) = progress.agreement.filter(|a| a.input > 0) {
                let _ = writeln!(
                    out,
                    "  agreement {} of {} labelled records ({:.1}%): the rubric's scores prefer the labelled response",
                    agreement.output,
                    agreement.input,
                    agreement.output as f64 * 100.0 / agreement.input as f64
                );
            }
            let eta = progress.eta_s.map_or("unknown".to_owned(), |s| {
                format!(
                    "{}",
                    humantime::format_duration(Duration::from_secs(s.round() as u64))
                )
            });
            let _ = writeln!(
                out,
                "  rate     {:.1} records/s, eta {eta}",
                progress.records_per_s
            );
        }
        None => {
            let _ = writeln!(out, "  no progress yet: is a coordinator running?");
        }
    }
    let _ = writeln!(
        out,
        "  fleet    {} workers, queue {} waiting, {} in flight",
        status.workers, status.queue.pending, status.queue.ack_pending
    );
    for limits in status.provider_limits.values() {
        let _ = writeln!(
            out,
            "  limits   {}: provider limits: {}",
            limits.stages.join(", "),
            limits.describe()
        );
    }
    for running in &status.running {
        let _ = writeln!(
            out,
            "  running  {} on {} (attempt {}, since {})",
            running.shard,
            running.worker,
            running.attempt,
            running.since.format("%H:%M:%S")
        );
    }
    for failed in &status.failed {
        let _ = writeln!(out, "  failed   {}: {}", failed.shard, failed.reason);
    }
    if !status.failed.is_empty() {
        let _ = writeln!(
            out,
            "  run `rubricmill retry {}` to queue the failed shards again",
            status.job
        );
    }
    out
}
