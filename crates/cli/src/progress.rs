//! The progress bar of `run`: shards done, rows, rate and ETA, on stderr, and only when stderr
//! is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rubricmill_runtime::{ProgressObserver, Tally};

pub struct Bar {
    bar: ProgressBar,
    already: u64,
}

impl Bar {
    pub fn new(enabled: bool) -> Self {
        let target = if enabled && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} shards  {msg}  eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        crate::logging::attach_progress_bar(bar.clone());
        Self { bar, already: 0 }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl ProgressObserver for Bar {
    fn started(&mut self, planned: u64, already_committed: u64) {
        self.already = already_committed;
        self.bar.set_length(planned);
        self.bar.set_position(already_committed);
        self.bar.reset_eta();
    }

    fn shard_done(&mut self, this_run: &Tally) {
        self.bar.set_position(self.already + this_run.shards);
        let seconds = self.bar.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!(
            "{} rows, {} rejects, {:.0} records/s",
            this_run.rows,
            this_run.rejects,
            this_run.records as f64 / seconds
        ));
    }
}
