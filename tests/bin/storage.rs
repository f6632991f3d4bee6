//! The storage service as a process of its own, for the end-to-end tests that kill it
//! (`reliability_storage_kill.rs`): Cargo gives a test the path of its own package's binaries
//! only (`CARGO_BIN_EXE_*`), so the e2e crate cannot name `photos-storage`'s, and a test that
//! found it in the target directory would run whatever was built there last.

fn main() -> std::process::ExitCode {
    photos_storage::process_main()
}
