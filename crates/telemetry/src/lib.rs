//! The Prometheus metrics endpoint and the Kubernetes health endpoints of rubricmill workers
//! and coordinators.
//!
//! - [`Registry`] holds counter, gauge and histogram families (kept and written in the
//!   OpenMetrics text format by the `prometheus-client` crate) and collectors such as
//!   [`ProcessCollector`]. Callbacks registered with [`Registry::on_scrape`] run before each
//!   render, to copy totals kept elsewhere into the metrics.
//! - [`Health`] is the readiness state the process updates (not ready, with a reason, until
//!   [`Health::set_ready`]).
//! - [`router`] answers `GET /metrics`, `GET /healthz` (liveness: the process answers) and
//!   `GET /readyz` (200 `ready`, or 503 with the reason); [`serve`] binds an address and serves
//!   it on rubricmill's one HTTP serving path (`rubricmill-http`).
//!
//! ```no_run
//! # async fn example() -> Result<(), rubricmill_telemetry::TelemetryError> {
//! use std::sync::Arc;
//! use rubricmill_telemetry::{Health, Registry, serve};
//!
//! let registry = Registry::new("rubricmill");
//! let committed = registry.counter("shards_committed_total", "Shards committed", &["pipeline"]);
//! committed.with(&["crg"]).inc();
//! let health = Health::new();
//! let server = serve("0.0.0.0:9464".parse().unwrap(), registry, Arc::clone(&health)).await?;
//! health.set_ready();
//! // … work …
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod health;
mod metrics;
mod process;
mod server;

pub use health::Health;
pub use metrics::{Counter, CounterExt, Family, Gauge, Histogram, Registry};
pub use process::ProcessCollector;
pub use server::{METRICS_CONTENT_TYPE, TelemetryError, TelemetryServer, router, serve};
