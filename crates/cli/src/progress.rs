//! The progress bar of `run`: shards done, rows, rate and ETA, and the live LLM counters (cost,
//! tokens, calls/s, retries, 429s) as they move, on stderr, and only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rubricmill_core::Usage;
use rubricmill_runtime::{LiveUsage, ProgressObserver, Tally};

pub struct Bar {
    bar: ProgressBar,
    already: u64,
    /// The rows part of the message, from the last committed shard.
    rows: String,
    /// The LLM part of the message, from the last live reading.
    llm: String,
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
        Self {
            bar,
            already: 0,
            rows: String::new(),
            llm: String::new(),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn redraw(&self) {
        let message = match (self.rows.is_empty(), self.llm.is_empty()) {
            (false, false) => format!("{}  {}", self.rows, self.llm),
            (true, false) => self.llm.clone(),
            _ => self.rows.clone(),
        };
        self.bar.set_message(message);
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
        self.rows = format!(
            "{} rows, {} rejects, {:.0} records/s",
            this_run.rows,
            this_run.rejects,
            this_run.records as f64 / seconds
        );
        self.redraw();
    }

    fn live_usage(&mut self, live: &LiveUsage) {
        self.llm = llm_line(&live.usage, live.calls_per_second());
        if live.batches_pending > 0 {
            self.llm
                .push_str(&format!(", {} batches pending", live.batches_pending));
        }
        self.redraw();
    }
}

/// The LLM part of the progress line: `$0.0123, 12.3k tok, 4.2 calls/s, 3 retries,
/// 2×429/503` (the last counts the provider's push-back answers, 429 and 503).
pub fn llm_line(usage: &Usage, calls_per_second: f64) -> String {
    format!(
        "{}, {} tok, {:.1} calls/s, {} {}, {}×429/503",
        dollars(usage.cost_usd),
        si(usage.tokens_in + usage.tokens_out),
        calls_per_second,
        usage.retries,
        if usage.retries == 1 {
            "retry"
        } else {
            "retries"
        },
        usage.throttled
    )
}

/// Cost with the precision its size needs: four decimals below a dollar, two below a thousand.
fn dollars(usd: f64) -> String {
    if usd < 1.0 {
        format!("${usd:.4}")
    } else if usd < 1000.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.0}")
    }
}

/// A count in thousands (`k`) or millions (`M`) with one decimal once it is that large.
fn si(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llm_line_shows_cost_tokens_rate_retries_and_429s() {
        let usage = Usage {
            calls: 42,
            retries: 3,
            throttled: 2,
            tokens_in: 10_000,
            tokens_out: 2_300,
            cost_usd: 0.0123,
            ..Usage::default()
        };
        assert_eq!(
            llm_line(&usage, 4.2),
            "$0.0123, 12.3k tok, 4.2 calls/s, 3 retries, 2×429/503"
        );
    }

    #[test]
    fn llm_line_scales_its_units() {
        let nothing = Usage::default();
        assert_eq!(
            llm_line(&nothing, 0.0),
            "$0.0000, 0 tok, 0.0 calls/s, 0 retries, 0×429/503"
        );
        let big = Usage {
            retries: 1,
            tokens_in: 4_000_000,
            tokens_out: 560_000,
            cost_usd: 12.345,
            ..Usage::default()
        };
        assert_eq!(
            llm_line(&big, 120.04),
            "$12.35, 4.6M tok, 120.0 calls/s, 1 retry, 0×429/503"
        );
        let huge = Usage {
            tokens_in: 999,
            cost_usd: 2500.4,
            ..Usage::default()
        };
        assert!(llm_line(&huge, 1.0).starts_with("$2500, 999 tok"));
    }
}
