//! Process metrics in the names every Prometheus client library uses: CPU time, resident
//! memory, open file descriptors, start time and threads. Read from `/proc/self` on Linux at
//! each scrape; elsewhere the collector renders nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, fixed at 100 on the
/// architectures Linux exposes to user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// Renders `process_*` metrics of the running process.
#[derive(Debug, Default)]
pub struct ProcessCollector;

/// One reading of `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessSample {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub open_fds: f64,
    pub start_time_seconds: f64,
    pub threads: f64,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(sample) = read_sample() else {
            return Ok(());
        };
        let cpu = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(sample.cpu_seconds).encode(cpu)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                sample.resident_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                sample.open_fds,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                sample.start_time_seconds,
            ),
            ("process_threads", "Number of OS threads.", sample.threads),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn read_sample() -> Option<ProcessSample> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
    parse_sample(&stat, &status, &boot, open_fds)
}

#[cfg(not(target_os = "linux"))]
fn read_sample() -> Option<ProcessSample> {
    None
}

/// Builds a sample from `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and the number of
/// entries of `/proc/self/fd`. `None` when a file is not as expected.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn parse_sample(
    stat: &str,
    status: &str,
    boot: &str,
    open_fds: usize,
) -> Option<ProcessSample> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let (_, after_name) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 3.. of proc_pid_stat(5): utime is 14, stime 15, num_threads 20, starttime 22.
    let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
    let cpu_ticks = field(14)? + field(15)?;
    let threads = field(20)?;
    let start_ticks = field(22)?;
    let resident_kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let boot_time: f64 = boot
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(ProcessSample {
        cpu_seconds: cpu_ticks / TICKS_PER_SECOND,
        resident_bytes: resident_kib * 1024.0,
        open_fds: open_fds as f64,
        start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
        threads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_proc_files() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 500 0 0 0 \
                    150 50 0 0 20 0 7 0 123456 1000000 250 18446744073709551615";
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t7\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 10\n";
        let sample = parse_sample(stat, status, boot, 12).unwrap();
        assert_eq!(
            sample,
            ProcessSample {
                cpu_seconds: 2.0,
                resident_bytes: 2048.0 * 1024.0,
                open_fds: 12.0,
                start_time_seconds: 1_700_000_000.0 + 1234.56,
                threads: 7.0,
            }
        );
        assert_eq!(parse_sample("garbage", status, boot, 1), None);
        assert_eq!(parse_sample(stat, "Name:\tx\n", boot, 1), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn reads_this_process() {
        let sample = read_sample().expect("a sample of this process");
        assert!(sample.resident_bytes > 0.0);
        assert!(sample.threads >= 1.0);
        assert!(sample.open_fds >= 3.0);
        assert!(sample.start_time_seconds > 1_500_000_000.0);
    }
}
