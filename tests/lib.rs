//! End-to-end tests live in `mesh.rs`; this library is empty on purpose.
