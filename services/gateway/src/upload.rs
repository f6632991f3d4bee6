//! `POST /api/v1/albums/{id}/photos`: a multipart upload streamed to storage, processed by
//! media, recorded by the catalog.
//!
//! Order, and why: the file streams into storage under a fresh key while its SHA-256 is
//! computed (never buffered whole); media then decodes it from storage and writes every variant;
//! only then does the catalog hear of it (`CreatePhoto`, idempotent on the content hash, then
//! `RecordMediaResult`). A file that is not an image therefore never becomes a catalog row, and
//! every failure after the upload deletes the original, so no step leaves a partial photo behind.
//! A re-upload of bytes the album already has answers 200 with the existing photo and drops the
//! new copy (its variants are content-addressed, so they are the existing photo's own).

use axum::Json;
use axum::extract::multipart::{Field, Multipart, MultipartError, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use photos_proto::catalog::v1 as pb;
use photos_proto::media::v1 as media_pb;
use photos_proto::storage::v1 as storage_pb;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::AppState;
use crate::api::{access, managed_album, render_photos};
use crate::auth::Principal;
use crate::error::GatewayError;
use crate::http_cache::hex;
use crate::idempotency::{self, Claim, Outcome};

/// Room for the multipart framing and the small text fields around the file.
pub const FORM_OVERHEAD_BYTES: u64 = 64 * 1024;
/// Longest `title` or `caption` field read (the catalog applies its own, smaller limits).
const MAX_TEXT_FIELD_BYTES: usize = 16 * 1024;

type ApiResult<T> = Result<T, GatewayError>;

fn multipart_error(e: MultipartError) -> GatewayError {
    // axum reports a body that broke off (shorter than its Content-Length, connection cut) as
    // a 500; it is the request that is bad.
    let status = match e.status().as_u16() {
        500.. => 400,
        status => status,
    };
    GatewayError::Rejected {
        status,
        message: format!("cannot read the upload: {}", e.body_text().to_lowercase()),
    }
}

/// The form once read: the file's facts, and where its bytes went.
struct Form {
    title: String,
    caption: String,
    file: Option<StoredFile>,
}

struct StoredFile {
    /// Empty when the bytes were only hashed (an idempotent replay).
    key: String,
    sha256: String,
    bytes: u64,
}

impl Form {
    /// What makes two uploads "the same request" for `Idempotency-Key`.
    fn fingerprint(&self, album_id: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [
            album_id,
            &self.title,
            &self.caption,
            self.file.as_ref().map_or("", |f| f.sha256.as_str()),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }
}

/// Where the file's bytes go while the form is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    Storage,
    /// Hash only: the request is a replay whose outcome is known.
    Discard,
}

pub async fn upload_photo(
    State(mut state): State<AppState>,
    principal: Principal,
    Path(album_id): Path<String>,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> ApiResult<Response> {
    if principal == Principal::Anonymous {
        return Err(GatewayError::Unauthenticated(
            "sign in to upload photos".into(),
        ));
    }
    let idempotency_key = headers
        .get("idempotency-key")
        .map(idempotency::parse_key)
        .transpose()?;
    let limit = state.upload.max_bytes;
    if let Some(declared) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && declared > limit + FORM_OVERHEAD_BYTES
    {
        return Err(too_large(limit));
    }
    let multipart = form.map_err(|r| GatewayError::Rejected {
        status: r.status().as_u16(),
        message: r.body_text().to_lowercase(),
    })?;
    let album = managed_album(&mut state, &principal, &album_id).await?;
    let user = principal.user_id().unwrap_or_default().to_owned();

    let claim = match &idempotency_key {
        Some(key) => Some(state.idempotency.claim(&user, key).await),
        None => None,
    };
    let ticket = match claim {
        None | Some(Claim::Unavailable) => None,
        Some(Claim::Fresh(ticket)) => Some(ticket),
        Some(Claim::Running) => {
            return Err(GatewayError::Rejected {
                status: 409,
                message: "a request with this Idempotency-Key is still being processed; retry when it has finished".into(),
            });
        }
        Some(Claim::Done(outcome)) => {
            let form = read_form(&state, multipart, &album_id, Sink::Discard).await?;
            if form.fingerprint(&album_id) != outcome.fingerprint {
                return Err(GatewayError::Rejected {
                    status: 422,
                    message: "this Idempotency-Key was already used for a different upload; use a new key for a new request".into(),
                });
            }
            let photo = state
                .catalog
                .get_photo(pb::GetPhotoRequest {
                    id: outcome.photo_id.clone(),
                })
                .await?
                .into_inner()
                .photo
                .ok_or(GatewayError::Missing("photo"))?;
            let mut response = respond(&state, &album, photo, outcome.status).await?;
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
    };

    let form = read_form(&state, multipart, &album_id, Sink::Storage).await?;
    let fingerprint = form.fingerprint(&album_id);
    let Some(file) = &form.file else {
        return Err(GatewayError::Rejected {
            status: 400,
            message: "the form has no `file` field: send the image as multipart field `file`"
                .into(),
        });
    };
    let result = record(&mut state, &album_id, &form, file).await;
    if result.as_ref().map_or(true, |(_, created)| !created) {
        // Failed, or the album already had these bytes: this upload's copy is not referenced.
        delete_original(&mut state, &file.key).await;
    }
    let (photo, created) = result?;
    let status = if created { 201 } else { 200 };
    if let Some(ticket) = ticket {
        ticket
            .complete(Outcome {
                fingerprint,
                status,
                photo_id: photo.id.clone(),
            })
            .await;
    }
    respond(&state, &album, photo, status).await
}

fn too_large(limit: u64) -> GatewayError {
    GatewayError::Rejected {
        status: 413,
        message: format!("the file is larger than the upload limit of {limit} bytes"),
    }
}

async fn respond(
    state: &AppState,
    album: &pb::Album,
    photo: pb::Photo,
    status: u16,
) -> ApiResult<Response> {
    let location = format!("/api/v1/photos/{}", photo.id);
    let json = render_photos(state, vec![photo], access(album))
        .await?
        .pop()
        .ok_or(GatewayError::Missing("photo"))?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    Ok((status, [(header::LOCATION, location)], Json(json)).into_response())
}

/// Media, then the catalog. Returns the photo and whether it is new.
async fn record(
    state: &mut AppState,
    album_id: &str,
    form: &Form,
    file: &StoredFile,
) -> ApiResult<(pb::Photo, bool)> {
    // Idempotent (variants are content-addressed), so retried once if media is unavailable
    // and the process's retry budget allows it.
    let media = state.media.clone();
    let processed = state
        .retries
        .call("media.ProcessStoredImage", || {
            let mut media = media.clone();
            let request = media_pb::ProcessStoredImageRequest {
                source_key: file.key.clone(),
                options: None,
            };
            async move { media.process_stored_image(request).await }
        })
        .await?
        .into_inner();
    let metadata = processed.metadata.unwrap_or_default();
    let created = state
        .catalog
        .create_photo(pb::CreatePhotoRequest {
            album_id: album_id.to_owned(),
            title: form.title.clone(),
            caption: form.caption.clone(),
            original_key: file.key.clone(),
            content_sha256: file.sha256.clone(),
            bytes: file.bytes,
            // The media and catalog enums share their numbering.
            format: metadata.format,
        })
        .await?
        .into_inner();
    let photo = created.photo.ok_or(GatewayError::Missing("photo"))?;
    if !created.created {
        return Ok((photo, false));
    }
    let placeholders = processed.placeholders.unwrap_or_default();
    let recorded = state
        .catalog
        .record_media_result(pb::RecordMediaResultRequest {
            photo_id: photo.id.clone(),
            status: pb::PhotoStatus::Ready as i32,
            failure_reason: String::new(),
            width: metadata.width,
            height: metadata.height,
            taken_time: metadata.taken_time,
            placeholders: Some(pb::Placeholders {
                dominant_color: placeholders.dominant_color,
                blur_data_uri: placeholders.blur_data_uri,
                blurhash: placeholders.blurhash,
                thumbhash: placeholders.thumbhash,
            }),
            variants: processed
                .variants
                .into_iter()
                .map(|v| pb::Variant {
                    preset: v.preset,
                    format: v.format,
                    object_key: v.object_key,
                    width: v.width,
                    height: v.height,
                    bytes: v.bytes,
                })
                .collect(),
        })
        .await;
    match recorded {
        Ok(r) => Ok((
            r.into_inner().photo.ok_or(GatewayError::Missing("photo"))?,
            true,
        )),
        Err(status) => {
            // Not recorded: take the half-made photo back out (its original is deleted by the
            // caller; the variants are content-addressed and may be shared, so they are left
            // for the orphan sweep).
            if let Err(e) = state
                .catalog
                .delete_photo(pb::DeletePhotoRequest {
                    id: photo.id.clone(),
                })
                .await
            {
                tracing::error!(photo = %photo.id, error = %e.message(), "could not remove a photo whose media result was not recorded");
            }
            Err(status.into())
        }
    }
}

async fn delete_original(state: &mut AppState, key: &str) {
    if key.is_empty() {
        return;
    }
    if let Err(e) = state
        .storage
        .delete_object(storage_pb::DeleteObjectRequest {
            key: key.to_owned(),
        })
        .await
    {
        tracing::warn!(key, error = %e.message(), "could not delete an unreferenced original; left for cleanup-s3");
    }
}

async fn read_form(
    state: &AppState,
    mut multipart: Multipart,
    album_id: &str,
    sink: Sink,
) -> ApiResult<Form> {
    let mut form = Form {
        title: String::new(),
        caption: String::new(),
        file: None,
    };
    let outcome = async {
        while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
            let name = field.name().unwrap_or_default().to_owned();
            match name.as_str() {
                "file" if form.file.is_some() => {
                    return Err(GatewayError::Rejected {
                        status: 400,
                        message: "the form has more than one `file` field: upload one photo per request".into(),
                    });
                }
                "file" => {
                    form.file = Some(match sink {
                        Sink::Storage => store_file(state, &mut field, album_id).await?,
                        Sink::Discard => hash_file(state, &mut field).await?,
                    });
                }
                "title" => form.title = text_field(field).await?,
                "caption" => form.caption = text_field(field).await?,
                other => {
                    return Err(GatewayError::Rejected {
                        status: 400,
                        message: format!(
                            "unknown form field {other:?}: send `file` and optionally `title` and `caption`"
                        ),
                    });
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = outcome {
        // A file stored before a later field failed is not referenced by anything.
        if let Some(file) = &form.file {
            let mut state = state.clone();
            delete_original(&mut state, &file.key).await;
        }
        return Err(e);
    }
    Ok(form)
}

async fn text_field(mut field: Field<'_>) -> ApiResult<String> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > MAX_TEXT_FIELD_BYTES {
            return Err(GatewayError::Rejected {
                status: 413,
                message: format!("text fields are limited to {MAX_TEXT_FIELD_BYTES} bytes"),
            });
        }
        buf.extend_from_slice(&chunk);
    }
    String::from_utf8(buf).map_err(|_| GatewayError::Rejected {
        status: 400,
        message: "text fields must be UTF-8".into(),
    })
}

/// The type the original is stored (and later served) with: the declared type only if it is one
/// of the raster formats media decodes. Anything else, `image/svg+xml` included, is stored as
/// `application/octet-stream`: a file that is both a JPEG and an SVG or HTML page (a polyglot)
/// passes media as a JPEG, and must never reach a browser as a type that runs scripts.
fn content_type(field: &Field<'_>) -> String {
    stored_type(field.content_type()).to_owned()
}

fn stored_type(declared: Option<&str>) -> &'static str {
    const RASTER: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "image/gif"];
    declared
        .and_then(|t| {
            let t = t.split(';').next().unwrap_or_default().trim();
            RASTER.into_iter().find(|r| r.eq_ignore_ascii_case(t))
        })
        .unwrap_or("application/octet-stream")
}

async fn hash_file(state: &AppState, field: &mut Field<'_>) -> ApiResult<StoredFile> {
    let limit = state.upload.max_bytes;
    let (mut hasher, mut bytes) = (Sha256::new(), 0u64);
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
    }
    Ok(StoredFile {
        key: String::new(),
        sha256: hex(&hasher.finalize()),
        bytes,
    })
}

/// Streams the field into `PutObject` in chunks of `upload.chunk_bytes`, hashing as it goes.
/// Memory stays at about two chunks: the channel to storage holds one, the buffer another.
async fn store_file(
    state: &AppState,
    field: &mut Field<'_>,
    album_id: &str,
) -> ApiResult<StoredFile> {
    let key = format!("originals/{album_id}/{}", uuid::Uuid::new_v4().simple());
    let (tx, rx) = mpsc::channel::<storage_pb::PutObjectRequest>(1);
    let header = storage_pb::PutObjectRequest {
        part: Some(storage_pb::put_object_request::Part::Header(
            storage_pb::PutObjectHeader {
                key: key.clone(),
                content_type: content_type(field),
                ..Default::default()
            },
        )),
    };
    tx.send(header).await.expect("the receiver is still here");
    let mut storage = state.storage.clone();
    let mut call = Box::pin(storage.put_object(ReceiverStream::new(rx)));

    // `answered_early` records that `call` has completed, so it is never polled again (a
    // finished async fn panics when resumed).
    let (fed, answered_early) = {
        let feed = feed(state, field, &tx);
        tokio::pin!(feed);
        tokio::select! {
            fed = &mut feed => (fed, false),
            // Storage answered before the body ended: it refused or broke off the upload.
            answered = &mut call => (Err(match answered {
                Err(status) => GatewayError::Downstream(status),
                Ok(_) => GatewayError::Downstream(tonic::Status::internal("storage completed an upload that had not ended")),
            }), true),
        }
    };
    match fed {
        Ok((sha256, bytes)) => {
            // Only a cleanly read body is finished: storage refuses a stream that ends without
            // `finish`, and checks the hash before the object becomes visible.
            let finish = storage_pb::PutObjectRequest {
                part: Some(storage_pb::put_object_request::Part::Finish(
                    storage_pb::PutObjectFinish {
                        sha256: sha256.clone(),
                    },
                )),
            };
            let sent = tx.send(finish).await;
            drop(tx);
            let stored = call.await;
            if sent.is_err() || stored.is_err() {
                let mut state = state.clone();
                delete_original(&mut state, &key).await;
            }
            stored?;
            Ok(StoredFile { key, sha256, bytes })
        }
        Err(e) => {
            // Ending the stream without `finish` makes storage abort the upload.
            drop(tx);
            if !answered_early {
                let _ = call.await;
            }
            let mut state = state.clone();
            delete_original(&mut state, &key).await;
            Err(e)
        }
    }
}

async fn feed(
    state: &AppState,
    field: &mut Field<'_>,
    tx: &mpsc::Sender<storage_pb::PutObjectRequest>,
) -> ApiResult<(String, u64)> {
    let limit = state.upload.max_bytes;
    let chunk_bytes = state.upload.chunk_bytes;
    let (mut hasher, mut bytes) = (Sha256::new(), 0u64);
    let mut buf = Vec::with_capacity(chunk_bytes);
    let send = |buf: Vec<u8>| async {
        tx.send(storage_pb::PutObjectRequest {
            part: Some(storage_pb::put_object_request::Part::Chunk(buf)),
        })
        .await
        .map_err(|_| {
            GatewayError::Downstream(tonic::Status::unavailable(
                "storage stopped reading the upload",
            ))
        })
    };
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        bytes += chunk.len() as u64;
        if bytes > limit {
            return Err(too_large(limit));
        }
        hasher.update(&chunk);
        buf.extend_from_slice(&chunk);
        if buf.len() >= chunk_bytes {
            send(std::mem::replace(&mut buf, Vec::with_capacity(chunk_bytes))).await?;
        }
    }
    if bytes == 0 {
        return Err(GatewayError::Rejected {
            status: 422,
            message: "the file is empty".into(),
        });
    }
    if !buf.is_empty() {
        send(buf).await?;
    }
    Ok((hex(&hasher.finalize()), bytes))
}

#[cfg(test)]
mod tests {
    use super::stored_type;

    #[test]
    fn only_raster_types_are_stored_as_declared() {
        assert_eq!(stored_type(Some("image/jpeg")), "image/jpeg");
        assert_eq!(stored_type(Some("IMAGE/PNG")), "image/png");
        assert_eq!(stored_type(Some("image/webp; q=1")), "image/webp");
        for risky in [
            Some("image/svg+xml"),
            Some("text/html"),
            Some("image/jpeg, text/html"),
            Some("image/x-icon"),
            Some(""),
            None,
        ] {
            assert_eq!(stored_type(risky), "application/octet-stream", "{risky:?}");
        }
    }
}
