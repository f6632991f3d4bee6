//! Memory of this test process, which hosts the whole in-process mesh, from `/proc/self/status`.
//! nextest runs every test in a process of its own, so a test's figures are its own.
#![allow(dead_code)]

pub const MIB: u64 = 1024 * 1024;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resident set size now, in bytes.
pub fn rss() -> u64 {
    status_kib("VmRSS") * 1024
}

/// The high-water mark of the resident set since the last [`reset_peak`], in bytes.
pub fn peak() -> u64 {
    status_kib("VmHWM") * 1024
}

/// Sets the high-water mark back to the current resident set (Linux `clear_refs` value 5).
pub fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM via /proc/self/clear_refs");
}

/// Peak growth of the resident set over a stretch of a test.
pub struct PeakProbe {
    baseline: u64,
}

impl PeakProbe {
    pub fn start() -> Self {
        reset_peak();
        Self { baseline: rss() }
    }

    pub fn baseline(&self) -> u64 {
        self.baseline
    }

    /// How far the resident set rose above where it was at `start`, at its highest.
    pub fn growth(&self) -> u64 {
        peak().saturating_sub(self.baseline)
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}
