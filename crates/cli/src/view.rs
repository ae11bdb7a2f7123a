//! `rubricmill view`: serves the web UI over one job's output folder (local or object store),
//! read only, until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rubricmill_core::JobSpec;
use rubricmill_ui::UiServer;

#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// The job spec (TOML); its output folder is what the UI shows.
    job: PathBuf,
    /// Where to serve the UI.
    #[arg(long, env = "RUBRICMILL_VIEW_ADDR", default_value = "127.0.0.1:8321")]
    addr: SocketAddr,
}

pub async fn view(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let spec = JobSpec::load(&args.job)?;
    let server = UiServer::view(args.addr, &spec)
        .await
        .with_context(|| format!("--addr {}", args.addr))?;
    println!(
        "job {} (read-only) at {}#/jobs; Ctrl-C stops",
        spec.name,
        server.url()
    );
    crate::run::interrupted().await;
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
