//! An S3-compatible server (s3s + s3s-fs) on a loopback port, storing objects under a local
//! directory. The embedded-default run serves `./data` with it so the storage service runs its
//! real aws-sdk-s3 code path with nothing installed; tests start one per test on port 0.
//!
//! s3s-fs implements the object API (multipart, ListObjectsV2, DeleteObjects, presigned URLs
//! with SigV4 checks) but not bucket lifecycle; tests that need lifecycle use SeaweedFS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum LocalS3Error {
    #[error("cannot use {path} as the object store directory: {message}")]
    Directory { path: PathBuf, message: String },
    #[error("cannot bind the local S3 server on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running server; dropping it stops accepting connections.
pub struct LocalS3 {
    addr: SocketAddr,
    root: PathBuf,
    stop: CancellationToken,
}

impl LocalS3 {
    /// Serves `root` on `addr` with SigV4 authentication for one key pair. Each directory under
    /// `root` is a bucket.
    pub async fn start(
        root: &Path,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
    ) -> Result<LocalS3, LocalS3Error> {
        std::fs::create_dir_all(root).map_err(|e| LocalS3Error::Directory {
            path: root.to_owned(),
            message: e.to_string(),
        })?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| LocalS3Error::Directory {
            path: root.to_owned(),
            message: format!("{e:?}"),
        })?;
        let service = {
            let mut builder = S3ServiceBuilder::new(fs);
            builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
            builder.build()
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| LocalS3Error::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| LocalS3Error::Bind { addr, source })?;
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move {
            let http = ConnBuilder::new(TokioExecutor::new());
            let graceful = hyper_util::server::graceful::GracefulShutdown::new();
            loop {
                let socket = tokio::select! {
                    () = token.cancelled() => break,
                    accepted = listener.accept() => match accepted {
                        Ok((socket, _)) => socket,
                        Err(e) => {
                            tracing::warn!(error = %e, "local S3: accept failed");
                            continue;
                        }
                    },
                };
                let _ = socket.set_nodelay(true);
                let conn = http.serve_connection(TokioIo::new(socket), service.clone());
                let conn = graceful.watch(conn.into_owned());
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            graceful.shutdown().await;
        });
        Ok(LocalS3 {
            addr,
            root: root.to_owned(),
            stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates a bucket (a directory) if it does not exist.
    pub fn ensure_bucket(&self, bucket: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(self.root.join(bucket))
    }
}

impl Drop for LocalS3 {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
