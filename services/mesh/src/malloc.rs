//! glibc's malloc gives threads arenas of their own, up to 8 per core. The all-in-one process
//! runs every service's threads (tokio workers, the blocking pool, media's encoder threads and
//! libwebp's, which come and go with each photo), and each arena keeps its own freed memory and
//! its own fragmentation, so the resident set crept up under a steady upload load (see
//! ARCHITECTURE.md, "allocator"). This is the crate's only `unsafe` (see its Cargo.toml).
#![allow(unsafe_code)]

/// Caps the number of malloc arenas. Takes effect only while the process has made at most 8
/// arenas (glibc fixes its own limit the first time it goes past that), so call it early.
/// Returns whether the allocator took the setting; elsewhere than glibc it does nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_arenas(max: usize) -> bool {
    let max = libc::c_int::try_from(max).unwrap_or(libc::c_int::MAX);
    // SAFETY: mallopt only reads its two integer arguments; M_ARENA_MAX is a documented
    // parameter that may be changed at any time.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, max) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas(_max: usize) -> bool {
    false
}
