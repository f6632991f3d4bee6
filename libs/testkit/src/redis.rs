//! Private Redis servers: one standalone `redis-server` per test, or a 3-master + 3-replica
//! cluster, on free loopback ports, killed when dropped. Nothing is persisted to disk.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{ports, wait};

fn redis_server_binary() -> anyhow::Result<&'static str> {
    match Command::new("redis-server").arg("--version").output() {
        Ok(out) if out.status.success() => Ok("redis-server"),
        _ => anyhow::bail!(
            "redis-server is not installed; scripts/test installs it (apt-get install redis-server)"
        ),
    }
}

fn spawn_node(port: u16, extra: &[String]) -> anyhow::Result<Child> {
    let binary = redis_server_binary()?;
    let mut cmd = Command::new(binary);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    Ok(cmd.spawn()?)
}

async fn ping(url: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pong: String = redis::cmd("PING").query_async(&mut conn).await?;
    anyhow::ensure!(pong == "PONG", "unexpected PING reply {pong:?}");
    Ok(())
}

/// A standalone Redis on a private port.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> anyhow::Result<RedisServer> {
        let port = ports::free_port(None);
        let mut server = RedisServer { port, child: None };
        server.restart().await?;
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (SIGSTOP): connections stay open and nothing answers, as a server
    /// stuck in a long fork, swap storm or debugger would. Data is kept.
    pub fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP")
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) -> anyhow::Result<()> {
        self.signal("-CONT")
    }

    fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let child = self
            .child
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("redis-server is not running"))?;
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill {signal} failed: {status}");
        Ok(())
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.child = Some(spawn_node(self.port, &[])?);
        let url = self.url();
        wait::until(
            "redis-server",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || ping(&url),
        )
        .await
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A paused process would not die of SIGKILL any later, but let it run its exit.
        let _ = self.resume();
        self.kill();
    }
}

/// A Redis Cluster of three masters, each with one replica.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start() -> anyhow::Result<RedisCluster> {
        let dir = tempfile::tempdir()?;
        let mut ports = Vec::new();
        while ports.len() < 6 {
            let p = ports::free_port(Some(10000));
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let mut children = Vec::new();
        for port in &ports {
            let conf = dir.path().join(format!("nodes-{port}.conf"));
            children.push(Some(spawn_node(
                *port,
                &[
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    conf.display().to_string(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                    "--dir".into(),
                    dir.path().display().to_string(),
                ],
            )?));
        }
        let cluster = RedisCluster {
            ports,
            children,
            _dir: dir,
        };
        for url in cluster.node_urls() {
            wait::until(
                "cluster node",
                Duration::from_secs(10),
                Duration::from_millis(20),
                || ping(&url),
            )
            .await?;
        }
        let addrs: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = tokio::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .await
            .map_err(|e| anyhow::anyhow!("cannot run redis-cli (install redis-tools): {e}"))?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for url in cluster.node_urls() {
            wait::until(
                "cluster_state:ok",
                Duration::from_secs(30),
                Duration::from_millis(50),
                || cluster_ok(url.clone()),
            )
            .await?;
        }
        Ok(cluster)
    }

    /// Every node, as `redis://127.0.0.1:port/`.
    pub fn node_urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}/"))
            .collect()
    }

    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// Kills one node (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(i) = self.ports.iter().position(|p| *p == port)
            && let Some(mut child) = self.children[i].take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Ports of the nodes that are masters right now.
    pub async fn masters(&self) -> anyhow::Result<Vec<u16>> {
        let mut masters = Vec::new();
        for (i, port) in self.ports.iter().enumerate() {
            if self.children[i].is_none() {
                continue;
            }
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
            let mut conn = client.get_multiplexed_async_connection().await?;
            let info: String = redis::cmd("ROLE")
                .query_async::<redis::Value>(&mut conn)
                .await
                .map(|v| match v {
                    redis::Value::Array(items) => match items.first() {
                        Some(redis::Value::BulkString(b)) => {
                            String::from_utf8_lossy(b).into_owned()
                        }
                        _ => String::new(),
                    },
                    _ => String::new(),
                })?;
            if info == "master" {
                masters.push(*port);
            }
        }
        Ok(masters)
    }

    /// Waits until every node but `masters` has its replication link up. A replica that has
    /// not finished its first sync refuses to fail over (its data counts as too old), and the
    /// first sync waits `repl-diskless-sync-delay` (5 s).
    pub async fn replicas_in_sync(&self, masters: &[u16]) -> anyhow::Result<()> {
        for port in self.ports.iter().filter(|p| !masters.contains(p)) {
            let url = format!("redis://127.0.0.1:{port}/");
            wait::until(
                "replica in sync",
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let url = url.clone();
                    async move {
                        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
                        let mut conn = client
                            .get_multiplexed_async_connection()
                            .await
                            .map_err(|e| e.to_string())?;
                        let info: String = redis::cmd("INFO")
                            .arg("replication")
                            .query_async(&mut conn)
                            .await
                            .map_err(|e| e.to_string())?;
                        if info.contains("master_link_status:up") {
                            Ok(())
                        } else {
                            Err("link down".to_string())
                        }
                    }
                },
            )
            .await?;
        }
        Ok(())
    }
}

async fn cluster_ok(url: String) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await?;
    anyhow::ensure!(info.contains("cluster_state:ok"), "cluster not ok yet");
    anyhow::ensure!(
        info.contains("cluster_slots_assigned:16384"),
        "slots not all assigned yet"
    );
    Ok(())
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
