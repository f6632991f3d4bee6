//! `import DIR --album ID`: uploads a folder's images in parallel, the same way the gateway's
//! upload does, so a file either becomes a complete photo or leaves nothing behind:
//! storage PutObject (under a fresh key) → media ProcessStoredImage (decodes it, writes every
//! variant) → catalog CreatePhoto (idempotent on the content hash) → RecordMediaResult. A file
//! that fails any step after the upload has its original deleted again.
//!
//! Files already in the album (same SHA-256) are skipped before anything is uploaded, so a
//! re-run after an interruption imports only what is missing. Runs client-side: the files are
//! on this machine, not the server's.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use photos_proto::catalog::v1 as catalog_pb;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::media::v1 as media_pb;
use photos_proto::media::v1::media_service_client::MediaServiceClient;
use photos_proto::storage::v1 as storage_pb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{CtlError, exit};
use crate::output::Output;

const EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "gif"];
const CHUNK: usize = 256 * 1024;
/// Larger files are refused here rather than by the media service after an upload.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Clone)]
pub struct Clients {
    pub catalog: CatalogServiceClient<Channel>,
    pub media: MediaServiceClient<Channel>,
    pub storage: StorageServiceClient<Channel>,
}

#[derive(Debug)]
enum FileOutcome {
    Imported {
        photo_id: String,
    },
    /// The album already has these bytes.
    Skipped {
        photo_id: String,
    },
    Failed {
        error: String,
    },
}

/// Image files under `dir`, recursively, in name order; hidden entries are ignored.
fn image_files(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), CtlError> {
    let io = |path: &Path, source| CtlError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut images = Vec::new();
    let mut ignored = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| io(&d, e))? {
            let entry = entry.map_err(|e| io(&d, e))?;
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type().map_err(|e| io(&path, e))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let is_image = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
                if is_image {
                    images.push(path);
                } else {
                    ignored.push(path);
                }
            }
        }
    }
    images.sort();
    ignored.sort();
    Ok((images, ignored))
}

fn content_type(bytes: &[u8]) -> &'static str {
    match bytes {
        [0xFF, 0xD8, 0xFF, ..] => "image/jpeg",
        [0x89, b'P', b'N', b'G', ..] => "image/png",
        [b'G', b'I', b'F', b'8', ..] => "image/gif",
        [
            b'R',
            b'I',
            b'F',
            b'F',
            _,
            _,
            _,
            _,
            b'W',
            b'E',
            b'B',
            b'P',
            ..,
        ] => "image/webp",
        _ => "application/octet-stream",
    }
}

/// Content hashes already in the album, with their photo ids.
async fn existing(
    catalog: &CatalogServiceClient<Channel>,
    album_id: &str,
) -> Result<std::collections::HashMap<String, String>, CtlError> {
    let mut found = std::collections::HashMap::new();
    let mut token = String::new();
    loop {
        let page = catalog
            .clone()
            .list_photos(catalog_pb::ListPhotosRequest {
                album_id: album_id.to_owned(),
                page_size: 100,
                page_token: token.clone(),
            })
            .await
            .map_err(|s| CtlError::call("catalog", &s))?
            .into_inner();
        for p in page.photos {
            found.insert(p.content_sha256, p.id);
        }
        if page.next_page_token.is_empty() {
            return Ok(found);
        }
        token = page.next_page_token;
    }
}

pub async fn run(
    clients: Clients,
    dir: &Path,
    album_id: &str,
    workers: usize,
    out: Output,
) -> Result<u8, CtlError> {
    if !dir.is_dir() {
        return Err(CtlError::Usage(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    // Fails early (NOT_FOUND) for an unknown album, before any file is read.
    clients
        .catalog
        .clone()
        .get_album(catalog_pb::GetAlbumRequest {
            id: album_id.to_owned(),
            photo_page_size: 1,
        })
        .await
        .map_err(|s| CtlError::call("catalog", &s))?;
    let (files, ignored) = image_files(dir)?;
    let known = existing(&clients.catalog, album_id).await?;
    let total = files.len() as u64;
    let mut progress = out.progress(&format!("import into album {album_id}"));
    progress.update(0, total, 0, "running");
    let done = AtomicU64::new(0);
    let failed = AtomicU64::new(0);
    let results: Vec<(PathBuf, FileOutcome)> = futures::stream::iter(files)
        .map(|path| {
            let clients = clients.clone();
            let known = &known;
            async move {
                let outcome = import_file(&clients, &path, album_id, known).await;
                (path, outcome)
            }
        })
        .buffered(workers.max(1))
        .inspect(|(path, outcome)| {
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            if let FileOutcome::Failed { error } = outcome {
                failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(file = %path.display(), %error, "file not imported");
            }
            progress.update(d, total, failed.load(Ordering::Relaxed), "running");
        })
        .collect()
        .await;
    progress.update(total, total, failed.load(Ordering::Relaxed), "finished");
    progress.finish();

    let mut imported = Vec::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for (path, outcome) in &results {
        let file = path.display().to_string();
        match outcome {
            FileOutcome::Imported { photo_id } => {
                out.line(format!("imported {file} (photo {photo_id})"));
                imported.push(json!({ "file": file, "photo_id": photo_id }));
            }
            FileOutcome::Skipped { photo_id } => {
                out.line(format!("skipped  {file} (already photo {photo_id})"));
                skipped.push(json!({ "file": file, "photo_id": photo_id }));
            }
            FileOutcome::Failed { error } => {
                out.line(format!("failed   {file}: {error}"));
                failures.push(json!({ "file": file, "error": error }));
            }
        }
    }
    out.line(format!(
        "{} imported, {} skipped, {} failed, {} not images",
        imported.len(),
        skipped.len(),
        failures.len(),
        ignored.len()
    ));
    out.document(&json!({
        "album_id": album_id,
        "imported": imported,
        "skipped": skipped,
        "failed": failures,
        "ignored": ignored.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
    }));
    Ok(if failures.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    })
}

async fn import_file(
    clients: &Clients,
    path: &Path,
    album_id: &str,
    known: &std::collections::HashMap<String, String>,
) -> FileOutcome {
    let failed = |error: String| FileOutcome::Failed { error };
    match tokio::fs::metadata(path).await {
        Ok(m) if m.len() > MAX_FILE_BYTES => {
            return failed(format!(
                "{} bytes is over the import limit of {MAX_FILE_BYTES}",
                m.len()
            ));
        }
        Ok(_) => {}
        Err(e) => return failed(format!("cannot read it: {e}")),
    }
    let bytes = match tokio::fs::read(path).await {
        Ok(b) => b,
        Err(e) => return failed(format!("cannot read it: {e}")),
    };
    let sha256 = hex::encode(Sha256::digest(&bytes));
    if let Some(photo_id) = known.get(&sha256) {
        return FileOutcome::Skipped {
            photo_id: photo_id.clone(),
        };
    }
    let key = format!("originals/{album_id}/{}", uuid::Uuid::new_v4().simple());
    if let Err(e) = put(clients, &key, &bytes, &sha256).await {
        return failed(e);
    }
    let outcome = process_and_record(clients, path, album_id, &key, &bytes, &sha256).await;
    let keep_original = matches!(&outcome, FileOutcome::Imported { .. });
    if !keep_original {
        // Nothing may point at it: a failed file or a duplicate (the album's existing photo
        // has its own original) leaves no object behind.
        let delete = storage_pb::DeleteObjectRequest { key: key.clone() };
        if let Err(s) = clients.storage.clone().delete_object(delete).await {
            tracing::warn!(%key, error = %s.message(), "could not delete an unused original");
        }
    }
    outcome
}

async fn put(clients: &Clients, key: &str, bytes: &[u8], sha256: &str) -> Result<(), String> {
    let header = storage_pb::PutObjectRequest {
        part: Some(storage_pb::put_object_request::Part::Header(
            storage_pb::PutObjectHeader {
                key: key.to_owned(),
                content_type: content_type(bytes).to_owned(),
                content_addressed: false,
                expected_size: bytes.len() as u64,
                sha256: sha256.to_owned(),
            },
        )),
    };
    let chunks = bytes.chunks(CHUNK).map(|c| storage_pb::PutObjectRequest {
        part: Some(storage_pb::put_object_request::Part::Chunk(c.to_vec())),
    });
    let messages: Vec<_> = std::iter::once(header).chain(chunks).collect();
    clients
        .storage
        .clone()
        .put_object(tokio_stream::iter(messages))
        .await
        .map(|_| ())
        .map_err(|s| format!("storage: {}", s.message()))
}

async fn process_and_record(
    clients: &Clients,
    path: &Path,
    album_id: &str,
    key: &str,
    bytes: &[u8],
    sha256: &str,
) -> FileOutcome {
    let failed = |error: String| FileOutcome::Failed { error };
    let processed = match clients
        .media
        .clone()
        .process_stored_image(media_pb::ProcessStoredImageRequest {
            source_key: key.to_owned(),
            options: None,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(format!("media: {}", s.message())),
    };
    let metadata = processed.metadata.unwrap_or_default();
    let title = path
        .file_stem()
        .map(|s| s.to_string_lossy().chars().take(200).collect::<String>())
        .unwrap_or_default();
    let created = match clients
        .catalog
        .clone()
        .create_photo(catalog_pb::CreatePhotoRequest {
            album_id: album_id.to_owned(),
            title,
            caption: String::new(),
            original_key: key.to_owned(),
            content_sha256: sha256.to_owned(),
            bytes: bytes.len() as u64,
            format: metadata.format,
        })
        .await
    {
        Ok(r) => r.into_inner(),
        Err(s) => return failed(format!("catalog: {}", s.message())),
    };
    let photo = created.photo.unwrap_or_default();
    if !created.created {
        // Another run (or the gateway) added the same bytes meanwhile.
        return FileOutcome::Skipped { photo_id: photo.id };
    }
    let placeholders = processed.placeholders.unwrap_or_default();
    let record = catalog_pb::RecordMediaResultRequest {
        photo_id: photo.id.clone(),
        status: catalog_pb::PhotoStatus::Ready as i32,
        failure_reason: String::new(),
        width: metadata.width,
        height: metadata.height,
        taken_time: metadata.taken_time,
        placeholders: Some(catalog_pb::Placeholders {
            dominant_color: placeholders.dominant_color,
            blur_data_uri: placeholders.blur_data_uri,
            blurhash: placeholders.blurhash,
            thumbhash: placeholders.thumbhash,
        }),
        variants: processed
            .variants
            .into_iter()
            .map(|v| catalog_pb::Variant {
                preset: v.preset,
                format: v.format,
                object_key: v.object_key,
                width: v.width,
                height: v.height,
                bytes: v.bytes,
            })
            .collect(),
    };
    if let Err(s) = clients.catalog.clone().record_media_result(record).await {
        // Leave no half-made photo: remove the row (its original goes with the caller's delete).
        let _ = clients
            .catalog
            .clone()
            .delete_photo(catalog_pb::DeletePhotoRequest {
                id: photo.id.clone(),
            })
            .await;
        return failed(format!("catalog: {}", s.message()));
    }
    FileOutcome::Imported { photo_id: photo.id }
}
