//! `photosctl`: the operator's CLI. Bulk work runs server-side as durable jobs in the catalog
//! (they survive restarts of the catalog and of this CLI); photosctl starts them and follows
//! their progress. `import` runs here, as the files are local.

mod config;
mod error;
mod import;
mod jobs;
mod output;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use photos_proto::jobs::v1 as pb;
use photos_proto::jobs::v1::job_params::Params;
use photos_runtime::UpstreamConfig;
use photos_runtime::client::Channel;
use photos_runtime::config::EXIT_CONFIG;
use tracing::Instrument;

use config::CtlConfig;
use error::{CtlError, exit};
use output::Output;

#[derive(Parser, Debug)]
#[command(name = "photosctl", version, about = "Operate a photos deployment", long_about = None)]
struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Catalog address (overrides PHOTOS__CATALOG__ADDRESS), e.g. http://127.0.0.1:50051.
    #[arg(long, global = true, value_name = "URL")]
    catalog: Option<String>,
    /// Media address (import), overrides PHOTOS__MEDIA__ADDRESS.
    #[arg(long, global = true, value_name = "URL")]
    media: Option<String>,
    /// Storage address (import), overrides PHOTOS__STORAGE__ADDRESS.
    #[arg(long, global = true, value_name = "URL")]
    storage: Option<String>,
    /// Cache-admin address (stats), overrides PHOTOS__CACHE_ADMIN__ADDRESS.
    #[arg(long, global = true, value_name = "URL")]
    cache_admin: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Follow {
    /// Start the job and print its id without following it.
    #[arg(long)]
    no_wait: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Warm the shared cache through the catalog's read path (one item per album).
    WarmCache {
        /// Only this album.
        #[arg(long, value_name = "ID")]
        album: Option<String>,
        #[arg(long)]
        published_only: bool,
        /// Recompute entries even when present.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// Re-derive every photo's variants (and optionally move originals to a storage class).
    OptimizeImages {
        /// Produce WebP beside JPEG.
        #[arg(long)]
        generate_webp: bool,
        /// Produce every responsive size, not only the sizes a photo already has.
        #[arg(long)]
        responsive: bool,
        /// Move originals to this storage class afterwards.
        #[arg(long, value_enum)]
        storage_class: Option<StorageClassArg>,
        /// Photos processed at once (server default 4).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
        workers: Option<u32>,
        #[arg(long, value_name = "ID")]
        album: Option<String>,
        #[command(flatten)]
        follow: Follow,
    },
    /// Produce thumbnails (JPEG and WebP) from the originals.
    GenerateThumbnails {
        /// Only photos without a thumbnail.
        #[arg(long)]
        missing_only: bool,
        /// A custom box, e.g. 400x400 (default: the configured thumbnail preset).
        #[arg(long, value_parser = parse_size, value_name = "WxH")]
        size: Option<(u32, u32)>,
        /// JPEG and WebP quality of a custom size.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100), requires = "size")]
        quality: Option<u32>,
        #[arg(long, value_name = "ID")]
        album: Option<String>,
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=16))]
        workers: Option<u32>,
        #[command(flatten)]
        follow: Follow,
    },
    /// Delete (or archive) stored objects that no photo references.
    CleanupS3 {
        /// Only objects at least this old.
        #[arg(long, default_value_t = 30, value_name = "N")]
        older_than_days: u32,
        /// List the orphans and their total size; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Move orphans to GLACIER instead of deleting them.
        #[arg(long)]
        archive: bool,
        #[command(flatten)]
        follow: Follow,
    },
    /// Upload a folder's images into an album, in parallel, skipping files already there.
    Import {
        dir: PathBuf,
        #[arg(long, value_name = "ID")]
        album: String,
        /// Files uploaded at once.
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=32))]
        workers: u32,
    },
    /// Catalog totals, cache statistics and active jobs.
    Stats,
    /// Inspect and control jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Apply the catalog's database migrations (PHOTOS__DATABASE__URL).
    Migrate,
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// Recent jobs, newest first.
    List {
        #[arg(long = "state", value_enum)]
        states: Vec<StateArg>,
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(1..=1000))]
        limit: i32,
    },
    /// One job; with --items (or --failed) its items too.
    Show {
        id: String,
        #[arg(long)]
        items: bool,
        /// Only the failed items.
        #[arg(long)]
        failed: bool,
    },
    /// Cancel a queued or running job.
    Cancel { id: String },
    /// Follow a job's progress until it ends.
    Watch { id: String },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
enum StorageClassArg {
    Standard,
    StandardIa,
    Glacier,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum StateArg {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum KindArg {
    WarmCache,
    OptimizeImages,
    GenerateThumbnails,
    CleanupS3,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT, e.g. 400x400"))?;
    let edge = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|n| (1..=4096).contains(n))
            .ok_or_else(|| format!("{v:?} must be a whole number of pixels from 1 to 4096"))
    };
    Ok((edge(w)?, edge(h)?))
}

fn override_address(upstream: &mut UpstreamConfig, flag: &Option<String>) {
    if let Some(address) = flag {
        upstream.address = address.clone();
    }
}

fn album(id: Option<String>) -> String {
    id.unwrap_or_default()
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::WarmCache { .. } => "warm-cache",
        Command::OptimizeImages { .. } => "optimize-images",
        Command::GenerateThumbnails { .. } => "generate-thumbnails",
        Command::CleanupS3 { .. } => "cleanup-s3",
        Command::Import { .. } => "import",
        Command::Stats => "stats",
        Command::Jobs { .. } => "jobs",
        Command::Migrate => "migrate",
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config: CtlConfig = match photos_runtime::config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("photosctl: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    override_address(&mut config.catalog, &cli.catalog);
    override_address(&mut config.media, &cli.media);
    override_address(&mut config.storage, &cli.storage);
    override_address(&mut config.cache_admin, &cli.cache_admin);
    if let Err(e) = photos_runtime::config::Validate::validate(&config) {
        eprintln!("photosctl: {e}");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("photosctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = match photos_runtime::telemetry::init("photosctl", &config.telemetry) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("photosctl: {e}");
                return ExitCode::from(EXIT_CONFIG as u8);
            }
        };
        let out = Output::new(cli.json);
        // One trace per invocation: the jobs it starts continue it.
        let span = tracing::info_span!(
            "photosctl",
            otel.name = %format!("photosctl {}", command_name(&cli.command))
        );
        let result = run(cli.command, config, out).instrument(span).await;
        telemetry.shutdown();
        match result {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                if out.json {
                    out.document(&serde_json::json!({ "error": e.to_string() }));
                }
                eprintln!("photosctl: {e}");
                e.exit_code()
            }
        }
    })
}

async fn run(command: Command, config: CtlConfig, out: Output) -> Result<u8, CtlError> {
    if let Command::Migrate = command {
        return migrate(&config, out).await;
    }
    let catalog_channel = Channel::connect_lazy(&config.catalog)?;
    let jobs_client = jobs::Client::new(catalog_channel.clone());
    let bulk = |params: Params, workers: Option<u32>, follow: Follow| {
        let client = jobs_client.clone();
        async move {
            let (job, code) =
                jobs::start_and_follow(&client, params, workers.unwrap_or(0), follow.no_wait, out)
                    .await?;
            Ok::<_, CtlError>((client, job, code, follow.no_wait))
        }
    };
    match command {
        Command::WarmCache {
            album: id,
            published_only,
            force,
            follow,
        } => {
            let params = Params::WarmCache(pb::WarmCacheParams {
                album_id: album(id),
                published_only,
                force,
            });
            finish(bulk(params, None, follow).await?, out).await
        }
        Command::OptimizeImages {
            generate_webp,
            responsive,
            storage_class,
            workers,
            album: id,
            follow,
        } => {
            let class = match storage_class {
                None => pb::StorageClass::Unspecified,
                Some(StorageClassArg::Standard) => pb::StorageClass::Standard,
                Some(StorageClassArg::StandardIa) => pb::StorageClass::StandardIa,
                Some(StorageClassArg::Glacier) => pb::StorageClass::Glacier,
            };
            let params = Params::OptimizeImages(pb::OptimizeImagesParams {
                generate_webp,
                responsive,
                storage_class: class as i32,
                album_id: album(id),
            });
            finish(bulk(params, workers, follow).await?, out).await
        }
        Command::GenerateThumbnails {
            missing_only,
            size,
            quality,
            album: id,
            workers,
            follow,
        } => {
            let (width, height) = size.unwrap_or((0, 0));
            let params = Params::GenerateThumbnails(pb::GenerateThumbnailsParams {
                missing_only,
                width,
                height,
                quality: quality.unwrap_or(0),
                album_id: album(id),
            });
            finish(bulk(params, workers, follow).await?, out).await
        }
        Command::CleanupS3 {
            older_than_days,
            dry_run,
            archive,
            follow,
        } => {
            let params = Params::CleanupS3(pb::CleanupS3Params {
                older_than_days,
                dry_run,
                archive,
            });
            let (client, job, code, no_wait) = bulk(params, None, follow).await?;
            if dry_run && !no_wait && job.state == pb::JobState::Succeeded as i32 {
                return dry_run_report(&client, &job, out).await.map(|()| code);
            }
            finish((client, job, code, no_wait), out).await
        }
        Command::Import {
            dir,
            album,
            workers,
        } => {
            let clients = import::Clients {
                catalog:
                    photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(
                        catalog_channel,
                    ),
                media: photos_proto::media::v1::media_service_client::MediaServiceClient::new(
                    Channel::connect_lazy(&config.media)?,
                ),
                storage:
                    photos_proto::storage::v1::storage_service_client::StorageServiceClient::new(
                        Channel::connect_lazy(&config.storage)?,
                    ),
            };
            import::run(clients, &dir, &album, workers as usize, out).await
        }
        Command::Stats => {
            let catalog =
                photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient::new(
                    catalog_channel,
                );
            let cache_admin =
                photos_proto::cache_admin::v1::cache_admin_service_client::CacheAdminServiceClient::new(
                    Channel::connect_lazy(&config.cache_admin)?,
                );
            stats::run(catalog, cache_admin, jobs_client, out).await
        }
        Command::Jobs { command } => match command {
            JobsCommand::List {
                states,
                kind,
                limit,
            } => {
                let states = states
                    .into_iter()
                    .map(|s| match s {
                        StateArg::Queued => pb::JobState::Queued,
                        StateArg::Running => pb::JobState::Running,
                        StateArg::Succeeded => pb::JobState::Succeeded,
                        StateArg::Failed => pb::JobState::Failed,
                        StateArg::Cancelled => pb::JobState::Cancelled,
                    })
                    .collect();
                let kind = match kind {
                    None => pb::JobKind::Unspecified,
                    Some(KindArg::WarmCache) => pb::JobKind::WarmCache,
                    Some(KindArg::OptimizeImages) => pb::JobKind::OptimizeImages,
                    Some(KindArg::GenerateThumbnails) => pb::JobKind::GenerateThumbnails,
                    Some(KindArg::CleanupS3) => pb::JobKind::CleanupS3,
                };
                jobs::list(&jobs_client, states, kind, limit, out).await
            }
            JobsCommand::Show { id, items, failed } => {
                let state = match (items, failed) {
                    (_, true) => Some(pb::ItemState::Failed),
                    (true, false) => Some(pb::ItemState::Unspecified),
                    (false, false) => None,
                };
                jobs::show(&jobs_client, &id, state, out).await
            }
            JobsCommand::Cancel { id } => jobs::cancel(&jobs_client, &id, out).await,
            JobsCommand::Watch { id } => {
                let job = jobs::follow(&jobs_client, &id, out).await?;
                let code = jobs::outcome(&job);
                jobs::report(&jobs_client, &job, out).await?;
                Ok(code)
            }
        },
        Command::Migrate => unreachable!("handled above"),
    }
}

/// Prints a started (or finished) job and returns its exit status.
async fn finish(
    (client, job, code, no_wait): (jobs::Client, pb::Job, u8, bool),
    out: Output,
) -> Result<u8, CtlError> {
    if no_wait {
        out.document(&serde_json::json!({ "job": output::job_json(&job) }));
        out.line(&job.id);
        return Ok(code);
    }
    jobs::report(&client, &job, out).await?;
    Ok(code)
}

/// The orphans a dry run found, with their total size.
async fn dry_run_report(client: &jobs::Client, job: &pb::Job, out: Output) -> Result<(), CtlError> {
    let items = jobs::all_items(client, &job.id, pb::ItemState::Unspecified).await?;
    let total: u64 = items.iter().map(|i| i.bytes).sum();
    out.document(&serde_json::json!({
        "job": output::job_json(job),
        "orphans": items.iter().map(|i| serde_json::json!({ "key": i.key, "bytes": i.bytes })).collect::<Vec<_>>(),
        "total_bytes": total,
    }));
    for item in &items {
        out.line(format!("{:>12}  {}", item.bytes, item.key));
    }
    out.line(format!(
        "{} orphaned objects, {} ({} bytes) would be {}",
        items.len(),
        output::bytes(total),
        total,
        match job.params.as_ref().and_then(|p| p.params.as_ref()) {
            Some(Params::CleanupS3(p)) if p.archive => "archived",
            _ => "deleted",
        }
    ));
    Ok(())
}

async fn migrate(config: &CtlConfig, out: Output) -> Result<u8, CtlError> {
    let store = photos_catalog::store::Store::connect_lazy(&config.database)
        .map_err(|e| CtlError::Migrate(e.to_string()))?;
    store
        .migrate_and_check()
        .await
        .map_err(|e| CtlError::Migrate(e.to_string()))?;
    photos_catalog::jobs::job_store(&store)
        .migrate()
        .await
        .map_err(|e| CtlError::Migrate(e.to_string()))?;
    out.document(&serde_json::json!({ "migrated": true, "backend": store.backend() }));
    out.line(format!("{} database migrated", store.backend()));
    Ok(exit::OK)
}
