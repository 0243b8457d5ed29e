//! What the process and its host say at a scrape: the standard `process_*`
//! series (memory, CPU time, file descriptors, start time; read from
//! `/proc/self` on Linux, as the Prometheus client libraries do), the memory
//! limit of the process's cgroup, and the space on the data directory's
//! filesystem. Resident memory is this service's main risk: its derived state
//! lives in memory (docs/operations.md, sizing table).

use std::path::Path;

/// One reading; `None` where the platform does not tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessReading {
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    /// The cgroup's memory limit (cgroup v2 `memory.max`, or v1); `None` when
    /// unlimited.
    pub memory_limit_bytes: Option<u64>,
}

/// Reads the process's figures now.
pub fn read() -> ProcessReading {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    ProcessReading {
        resident_memory_bytes: status_kib(&status, "VmRSS:").map(|kib| kib * 1024),
        virtual_memory_bytes: status_kib(&status, "VmSize:").map(|kib| kib * 1024),
        cpu_seconds: cpu_seconds(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        max_fds: nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .ok()
            .map(|(soft, _hard)| soft),
        start_time_seconds: start_time_seconds(),
        memory_limit_bytes: memory_limit_bytes(),
    }
}

/// A `Name:   123 kB` line of `/proc/self/status`.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

/// User and system CPU time of every thread.
fn cpu_seconds() -> Option<f64> {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).ok()?;
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    Some(seconds(usage.user_time()) + seconds(usage.system_time()))
}

/// Unix time the process started: its start in clock ticks after boot
/// (`/proc/self/stat`, field 22) plus the boot time (`/proc/stat`, `btime`).
fn start_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; fields after it do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let ticks_per_second = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(boot + ticks / ticks_per_second as f64)
}

/// The memory limit of the process's cgroup, v2 then v1.
fn memory_limit_bytes() -> Option<u64> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let limit = read("/sys/fs/cgroup/memory.max")
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))?
        .trim()
        .parse::<u64>()
        .ok()?;
    // cgroup v1 says "no limit" with a number near 2^63.
    (limit < 1 << 60).then_some(limit)
}

/// The available and total bytes of the filesystem holding `dir`.
pub fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    let block = stats.fragment_size() as u64;
    Some((
        stats.blocks_available() as u64 * block,
        stats.blocks() as u64 * block,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_reads_as_alive_and_using_memory() {
        let reading = read();
        let resident = reading.resident_memory_bytes.expect("VmRSS");
        assert!(resident > 1 << 20, "{resident} bytes resident");
        assert!(reading.virtual_memory_bytes.expect("VmSize") >= resident);
        assert!(reading.open_fds.expect("fds") >= 3);
        assert!(reading.max_fds.expect("limit") >= reading.open_fds.unwrap());
        let started = reading.start_time_seconds.expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // A test process started within the last day, and not in the future.
        assert!(
            started <= now + 1.0 && started > now - 86_400.0,
            "{started} vs {now}"
        );
        assert!(reading.cpu_seconds.expect("cpu") > 0.0);
        let (available, total) = disk_space(Path::new(".")).expect("statvfs");
        assert!(available <= total && total > 0);
    }

    #[test]
    fn status_lines_read_as_kib() {
        let status = "Name:\tx\nVmSize:\t  20480 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kib(status, "VmSize:"), Some(20480));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
