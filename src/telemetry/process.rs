//! Process metrics under the names every Prometheus dashboard and alert already uses
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …), read
//! from `/proc/self` at scrape time, so they cost nothing between scrapes and need no C library.
//! Where `/proc` cannot be read (not Linux) the metrics are left out rather than reported as 0.

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second in `/proc/<pid>/stat`. Linux fixes USER_HZ at 100 in its user-space
/// ABI on every architecture Rust targets; reading `sysconf(_SC_CLK_TCK)` would need `libc`
/// and `unsafe`, so the value is fixed here, as Prometheus's own procfs library does.
const USER_HZ: f64 = 100.0;

/// Reads `/proc/self` on every scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let sample = Sample::read();
        if let Some(seconds) = sample.cpu_seconds {
            let metric = ConstCounter::new(seconds);
            let at = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent, in seconds.",
                None,
                metric.metric_type(),
            )?;
            metric.encode(at)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes.",
                sample.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes.",
                sample.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Open file descriptors (sockets included).",
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "The soft limit on open file descriptors.",
                sample.max_fds,
            ),
            ("process_threads", "OS threads.", sample.threads),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        if let Some(seconds) = sample.start_time_seconds {
            let metric = ConstGauge::new(seconds);
            let at = encoder.encode_descriptor(
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds.",
                None,
                metric.metric_type(),
            )?;
            metric.encode(at)?;
        }
        Ok(())
    }
}

/// One reading of the process's state; each value is absent when its file could not be read.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    threads: Option<i64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl Sample {
    fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let boot_time = read("/proc/stat").as_deref().and_then(boot_time);
        let mut sample = read("/proc/self/stat")
            .as_deref()
            .map(|stat| from_stat(stat, boot_time))
            .unwrap_or_default();
        if let Some(status) = read("/proc/self/status") {
            sample.resident_bytes = status_bytes(&status, "VmRSS:");
            sample.virtual_bytes = status_bytes(&status, "VmSize:");
        }
        sample.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .and_then(|entries| i64::try_from(entries.count()).ok());
        sample.max_fds = read("/proc/self/limits")
            .as_deref()
            .and_then(max_open_files);
        sample
    }
}

/// CPU time, start time and threads from `/proc/self/stat` (proc(5)); `boot_time` is `btime`.
fn from_stat(stat: &str, boot_time: Option<u64>) -> Sample {
    // The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return Sample::default();
    };
    // Field 3 (state) is index 0 here, so field n is index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let ticks = |t: u64| t as f64 / USER_HZ;
    Sample {
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(user, system)| ticks(user + system)),
        start_time_seconds: field(22)
            .zip(boot_time)
            .map(|(start, boot)| boot as f64 + ticks(start)),
        threads: field(20).and_then(|t| i64::try_from(t).ok()),
        ..Sample::default()
    }
}

/// `btime` from `/proc/stat`: the boot time in seconds since the Unix epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_bytes(status: &str, key: &str) -> Option<i64> {
    let line = status.lines().find_map(|line| line.strip_prefix(key))?;
    let kilobytes: i64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kilobytes.checked_mul(1024)
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_the_command_name() {
        // A command name with a space and a parenthesis, then fields 3 to 24.
        let stat = "4242 (php (fpm) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 7 0 \
                    123456 5000000 1000 18446744073709551615";
        let sample = from_stat(stat, Some(1_700_000_000));
        assert_eq!(sample.cpu_seconds, Some(3.8));
        assert_eq!(sample.threads, Some(7));
        let start = sample.start_time_seconds.unwrap();
        assert!((start - 1_700_001_234.56).abs() < 1e-3, "{start}");
        assert_eq!(from_stat("4242 (x) S 1", None), Sample::default());
        assert_eq!(from_stat("garbage", None), Sample::default());
    }

    #[test]
    fn status_limits_and_boot_time() {
        let status = "Name:\tphigate\nVmSize:\t  123456 kB\nVmRSS:\t    2020 kB\nThreads:\t7\n";
        assert_eq!(status_bytes(status, "VmRSS:"), Some(2020 * 1024));
        assert_eq!(status_bytes(status, "VmSize:"), Some(123_456 * 1024));
        assert_eq!(status_bytes(status, "VmSwap:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            20000                524288               files     \n";
        assert_eq!(max_open_files(limits), Some(20_000));
        assert_eq!(
            max_open_files("Max open files  unlimited unlimited files"),
            None
        );
        assert_eq!(
            boot_time("cpu  1 2 3\nbtime 1796639043\nprocesses 9\n"),
            Some(1_796_639_043)
        );
    }

    #[test]
    fn this_process_reads_as_alive() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let sample = Sample::read();
        assert!(sample.resident_bytes.is_some_and(|b| b > 0), "{sample:?}");
        assert!(sample.open_fds.is_some_and(|n| n > 0), "{sample:?}");
        assert!(
            sample.start_time_seconds.is_some_and(|t| t > 1e9),
            "{sample:?}"
        );
        assert!(sample.threads.is_some_and(|t| t >= 1), "{sample:?}");
        assert!(sample.cpu_seconds.is_some(), "{sample:?}");
    }
}
