//! Durable bulk jobs on the database a service already owns (PostgreSQL, or SQLite for the
//! embedded run): a job table claimed with leases (`FOR UPDATE SKIP LOCKED` on PostgreSQL), an
//! item table recording each finished item so a job resumed after a crash or restart never
//! redoes finished work, bounded concurrency per job, progress counters, cancellation, and the
//! trace context of the call that started the job carried into the spans that run it.
//!
//! [`JobStore`] is the tables; [`Runner`] is the worker loop, running [`Executor`]s registered
//! per job kind.

mod error;
mod model;
mod runner;
mod store;
pub mod trace;

pub use error::JobError;
pub use model::*;
pub use runner::{ExecError, Executor, Runner, RunnerConfig, Waker};
pub use store::{Db, JobStore, MAX_PAGE};
