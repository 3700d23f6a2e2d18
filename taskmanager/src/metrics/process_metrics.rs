//! The process's own CPU time and resident memory, read from `/proc/self` at scrape time,
//! under the names Prometheus client libraries use for them.

use super::metric_families::{Labels, MetricFamilies};

pub fn collect(families: &mut MetricFamilies, labels: &Labels) {
    // Fields 14 and 15 of /proc/self/stat, counted after the command name (which is in
    // parentheses and may hold spaces): user and system time in clock ticks.
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // SAFETY: sysconf only reads a configuration value.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        if let (Some(Ok(user)), Some(Ok(system))) = (
            fields.get(11).map(|f| f.parse::<f64>()),
            fields.get(12).map(|f| f.parse::<f64>()),
        ) {
            families.counter(
                "process_cpu_seconds",
                "User and system CPU time spent by the process.",
                labels,
                (user + system) / ticks,
            );
        }
    }
    if let Ok(statm) = std::fs::read_to_string("/proc/self/statm")
        && let Some(Ok(pages)) = statm.split_whitespace().nth(1).map(str::parse::<f64>)
    {
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as f64;
        families.gauge(
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            labels,
            pages * page,
        );
    }
}
