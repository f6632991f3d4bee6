//! The storage service started in-process on port 0 against real S3 servers: the in-process
//! s3s-fs server, and SeaweedFS where AWS semantics matter (lifecycle, the 1000-key delete
//! limit, ListMultipartUploads).

mod batch;
mod ending;
mod faults;
mod helpers;
mod lifecycle;
mod multipart;
mod objects;
mod sweep;
mod telemetry;
mod urls;
