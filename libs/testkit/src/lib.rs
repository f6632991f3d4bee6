//! The real-backend test harness. Every helper starts or provisions a real server and cleans up
//! after itself when dropped; readiness is awaited by polling the server, never by sleeping a
//! fixed time.
//!
//! - [`postgres::TestDatabase`]: a fresh database per test on the machine's PostgreSQL
//!   (`PHOTOS_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! - [`postgres::PrivatePostgres`]: a PostgreSQL server of its own (initdb + pg_ctl), for
//!   tests that stop and restart the database.
//! - [`redis::RedisServer`] / [`redis::RedisCluster`]: a private `redis-server` per test, or a
//!   3-master + 3-replica cluster on free loopback ports.
//! - [`s3::TestS3`]: the in-process S3 server; [`s3::SeaweedFs`] where AWS semantics matter.
//! - [`otlp`]: an in-process OTLP receiver.
//! - [`faults::FaultProxy`]: a TCP proxy that counts request patterns and connections, cuts
//!   connections, plays a down or hung server, and answers chosen HTTP requests itself.
//! - [`consul::FakeConsul`]: an in-process Consul agent (the endpoints photos uses, as
//!   documented), whose gRPC checks call the registered servers.

pub mod consul;
pub mod faults;
pub mod http;
pub mod otlp;
pub mod ports;
pub mod postgres;
pub mod redis;
pub mod s3;
pub mod wait;
