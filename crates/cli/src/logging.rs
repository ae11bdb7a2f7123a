//! Logging to stderr: human-readable by default, JSON with `--log-format json`. While a progress
//! bar is drawn, log lines are printed above it instead of through it.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;

use indicatif::ProgressBar;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// Routes log output around `bar` from now on.
pub fn attach_progress_bar(bar: ProgressBar) {
    let _ = BAR.set(bar);
}

pub fn init(json: bool, filter: Option<&str>) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| {
            EnvFilter::new("warn,rubricmill=info,rubricmill_runtime=info,rubricmill_store=info,rubricmill_cluster=info,rubricmill_llm=info")
        });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(BarAwareWriter);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.with_target(false).init();
    }
}

#[derive(Clone, Copy)]
struct BarAwareWriter;

impl<'a> MakeWriter<'a> for BarAwareWriter {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(Vec::new())
    }
}

/// Collects one log event and writes it whole when dropped.
struct LineWriter(Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let write = || {
            let _ = std::io::stderr().write_all(&self.0);
        };
        match BAR.get() {
            Some(bar) if !bar.is_hidden() && !bar.is_finished() => bar.suspend(write),
            _ => write(),
        }
    }
}
