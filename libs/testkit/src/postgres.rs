//! A database per test on a real PostgreSQL server, dropped when the test ends.

use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub const ADMIN_URL_ENV: &str = "PHOTOS_TEST_POSTGRES_URL";
const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

pub fn admin_url() -> String {
    std::env::var(ADMIN_URL_ENV).unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// A freshly created, empty database. Dropping it drops the database (connections included).
pub struct TestDatabase {
    name: String,
    url: String,
    admin_url: String,
}

impl TestDatabase {
    pub async fn create() -> anyhow::Result<TestDatabase> {
        let admin_url = admin_url();
        let name = format!("photos_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot reach PostgreSQL at {admin_url} ({e}); start it (scripts/test does) or set {ADMIN_URL_ENV}"
            )
        })?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await?;
        let _ = admin.close().await;
        let url = match admin_url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{name}"),
            None => anyhow::bail!("{ADMIN_URL_ENV} must end with /<database>"),
        };
        Ok(TestDatabase {
            name,
            url,
            admin_url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on itself: use a thread with
        // its own small runtime.
        let joined = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut admin = PgConnection::connect(&admin_url).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if let Ok(Err(e)) = joined {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// Whether a database of this name exists (for harness tests).
pub async fn database_exists(name: &str) -> anyhow::Result<bool> {
    let mut admin = PgConnection::connect(&admin_url()).await?;
    let row: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut admin)
        .await?;
    Ok(row.is_some())
}

/// Waits (up to 20 s) until `n` sessions of the database at `url` wait on a lock; with
/// `mid_transaction`, only sessions whose transaction started before their current statement.
/// Fault tests use it to act while calls are provably inside the database.
pub async fn wait_blocked_on_lock(url: &str, n: i64, mid_transaction: bool) {
    let extra = if mid_transaction {
        " AND xact_start < query_start"
    } else {
        ""
    };
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock'{extra}"
    );
    crate::wait::until(
        "calls blocked on the lock",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(20),
        || {
            let sql = sql.clone();
            async move {
                let mut c = PgConnection::connect(url)
                    .await
                    .map_err(|e| e.to_string())?;
                let blocked: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&mut c)
                    .await
                    .map_err(|e| e.to_string())?;
                if blocked >= n {
                    Ok(())
                } else {
                    Err(format!("{blocked} of {n} blocked"))
                }
            }
        },
    )
    .await
    .unwrap();
}

/// A PostgreSQL server of its own (initdb + pg_ctl on a free port, trust auth, no fsync), for
/// tests that stop and restart the database under a running service. Needs the server binaries
/// (`/usr/lib/postgresql/<version>/bin`, Debian's `postgresql` package); as root it runs them as
/// the `postgres` user, since PostgreSQL refuses to run as root. Stopped and deleted when
/// dropped.
pub struct PrivatePostgres {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    port: u16,
    as_postgres: bool,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    pub async fn start() -> anyhow::Result<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| {
                anyhow::anyhow!("no PostgreSQL server binaries in /usr/lib/postgresql ({e})")
            })?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let version: u32 = e.file_name().to_str()?.parse().ok()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("pg_ctl").is_file())
            .max_by_key(|(version, _)| *version)
            .map(|(_, bin)| bin)
            .ok_or_else(|| anyhow::anyhow!("no pg_ctl under /usr/lib/postgresql/*/bin"))?;
        let uid = std::process::Command::new("id").arg("-u").output()?;
        let as_postgres = String::from_utf8_lossy(&uid.stdout).trim() == "0";
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        if as_postgres {
            let status = std::process::Command::new("chown")
                .args(["postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(
                status.success(),
                "cannot chown the data directory to postgres"
            );
        }
        let pg = PrivatePostgres {
            bin,
            data,
            port: crate::ports::free_port(None),
            as_postgres,
            _dir: dir,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data.display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        )?;
        pg.start_server().await?;
        Ok(pg)
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let out = cmd.args(args).stdin(std::process::Stdio::null()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{tool} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `postgres` database's URL.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) on the same port and data; returns once it accepts queries.
    pub async fn start_server(&self) -> anyhow::Result<()> {
        let data = self.data.display().to_string();
        let log = self.data.with_file_name("log").display().to_string();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {data} -c fsync=off",
            self.port
        );
        self.run(
            "pg_ctl",
            &["-D", &data, "-w", "-l", &log, "-o", &options, "start"],
        )?;
        let url = self.url();
        crate::wait::until(
            "private PostgreSQL",
            std::time::Duration::from_secs(30),
            std::time::Duration::from_millis(50),
            || async {
                let mut c = PgConnection::connect(&url).await?;
                sqlx::query("SELECT 1").execute(&mut c).await?;
                let _ = c.close().await;
                Ok::<_, sqlx::Error>(())
            },
        )
        .await
    }

    /// Stops the server: `fast` ends every session (rolling back open transactions) with
    /// `57P01 admin_shutdown`, `immediate` kills it as a crash would (recovery on restart).
    pub fn stop_server(&self, mode: &str) -> anyhow::Result<()> {
        let data = self.data.display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", mode, "-w", "stop"])
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.stop_server("immediate");
    }
}
