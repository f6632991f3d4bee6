//! PutObject: a single PUT for small objects, a multipart upload with parts in flight in
//! parallel for large ones. Memory stays bounded: at most the threshold is buffered before the
//! choice is made, then about `part_size × (part_concurrency + 1)`.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::CompletedPart;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::error::{StorageError, describe};
use crate::store::{IMMUTABLE_CACHE_CONTROL, ObjectMeta, SHA256_METADATA, Store};

#[derive(Debug, Clone, Default)]
pub struct PutHeader {
    pub key: String,
    pub content_type: String,
    pub content_addressed: bool,
    pub expected_size: u64,
    pub sha256: String,
}

#[derive(Debug)]
pub struct PutOutcome {
    pub object: ObjectMeta,
    pub parts: u32,
}

fn validate_header(store: &Store, h: &mut PutHeader) -> Result<(), StorageError> {
    store.check_key(&h.key)?;
    if h.content_type.is_empty() {
        h.content_type = "application/octet-stream".to_owned();
    }
    let ct = &h.content_type;
    if ct.len() > 255 || !ct.contains('/') || ct.chars().any(|c| c.is_control()) {
        return Err(StorageError::invalid(
            "content_type",
            format!("{ct:?} is not a media type such as image/jpeg"),
        ));
    }
    h.sha256 = h.sha256.to_ascii_lowercase();
    if !h.sha256.is_empty()
        && (h.sha256.len() != 64 || !h.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(StorageError::invalid(
            "sha256",
            "must be 64 hex digits (the SHA-256 of the object) or empty",
        ));
    }
    Ok(())
}

fn cache_control(h: &PutHeader) -> Option<&'static str> {
    h.content_addressed.then_some(IMMUTABLE_CACHE_CONTROL)
}

/// A stream that ends early looks like a complete one; the declared size tells them apart.
fn check_size(h: &PutHeader, actual: u64) -> Result<(), StorageError> {
    if h.expected_size != 0 && h.expected_size != actual {
        return Err(StorageError::invalid(
            "expected_size",
            format!(
                "the header declared {} bytes but {actual} arrived",
                h.expected_size
            ),
        ));
    }
    Ok(())
}

fn check_digest(h: &PutHeader, actual: &str) -> Result<(), StorageError> {
    if !h.sha256.is_empty() && h.sha256 != actual {
        return Err(StorageError::ChecksumMismatch {
            key: h.key.clone(),
            expected: h.sha256.clone(),
            actual: actual.to_owned(),
        });
    }
    Ok(())
}

pub async fn put<S>(
    store: Arc<Store>,
    mut header: PutHeader,
    mut chunks: S,
) -> Result<PutOutcome, StorageError>
where
    S: Stream<Item = Result<Vec<u8>, StorageError>> + Unpin + Send,
{
    validate_header(&store, &mut header)?;
    let t = store.transfer().clone();
    let threshold = t.multipart_threshold_bytes as usize;
    let mut hasher = Sha256::new();
    let mut buf = BytesMut::new();

    if header.expected_size < t.multipart_threshold_bytes {
        while buf.len() < threshold {
            match chunks.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    hasher.update(&chunk);
                    buf.extend_from_slice(&chunk);
                }
                None => return single_put(&store, &header, buf.freeze(), hasher).await,
            }
        }
    }
    multipart(store, header, chunks, buf, hasher).await
}

async fn single_put(
    store: &Store,
    h: &PutHeader,
    body: Bytes,
    hasher: Sha256,
) -> Result<PutOutcome, StorageError> {
    let digest = hasher.finalize();
    let hex_digest = hex::encode(digest);
    // Verified before anything is written: a mismatch leaves no object behind.
    check_digest(h, &hex_digest)?;
    let size = body.len() as u64;
    check_size(h, size)?;
    let out = store
        .s3
        .put_object()
        .bucket(&store.bucket)
        .key(&h.key)
        .content_type(&h.content_type)
        .set_cache_control(cache_control(h).map(str::to_owned))
        .metadata(SHA256_METADATA, &hex_digest)
        // The store re-hashes the body and refuses it if a byte changed on the way.
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
        .body(ByteStream::from(body))
        .send()
        .await
        .map_err(describe)?;
    Ok(PutOutcome {
        object: ObjectMeta {
            key: h.key.clone(),
            size,
            content_type: h.content_type.clone(),
            etag: out.e_tag().unwrap_or_default().to_owned(),
            sha256: hex_digest,
            cache_control: cache_control(h).unwrap_or_default().to_owned(),
            ..ObjectMeta::default()
        },
        parts: 1,
    })
}

async fn multipart<S>(
    store: Arc<Store>,
    h: PutHeader,
    chunks: S,
    buf: BytesMut,
    hasher: Sha256,
) -> Result<PutOutcome, StorageError>
where
    S: Stream<Item = Result<Vec<u8>, StorageError>> + Unpin + Send,
{
    let mut create = store
        .s3
        .create_multipart_upload()
        .bucket(&store.bucket)
        .key(&h.key)
        .content_type(&h.content_type)
        .set_cache_control(cache_control(&h).map(str::to_owned));
    if !h.sha256.is_empty() {
        create = create.metadata(SHA256_METADATA, &h.sha256);
    }
    let upload_id = create
        .send()
        .await
        .map_err(describe)?
        .upload_id
        .ok_or_else(|| StorageError::S3("CreateMultipartUpload returned no upload id".into()))?;

    let mut in_flight = JoinSet::new();
    let result = upload_parts(&store, &h, &upload_id, chunks, buf, hasher, &mut in_flight).await;
    match result {
        Ok((mut parts, size, digest)) => {
            parts.sort_by_key(|p| p.part_number());
            let count = parts.len() as u32;
            let etag = store.complete(&h.key, &upload_id, parts).await?;
            Ok(PutOutcome {
                object: ObjectMeta {
                    key: h.key.clone(),
                    size,
                    content_type: h.content_type.clone(),
                    etag,
                    sha256: digest,
                    cache_control: cache_control(&h).unwrap_or_default().to_owned(),
                    ..ObjectMeta::default()
                },
                parts: count,
            })
        }
        Err(e) => {
            // Parts still uploading would land after the abort and orphan themselves.
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            store.abort(&h.key, &upload_id).await;
            Err(e)
        }
    }
}

type PartResult = Result<CompletedPart, StorageError>;

async fn upload_parts<S>(
    store: &Arc<Store>,
    h: &PutHeader,
    upload_id: &str,
    mut chunks: S,
    mut buf: BytesMut,
    mut hasher: Sha256,
    in_flight: &mut JoinSet<PartResult>,
) -> Result<(Vec<CompletedPart>, u64, String), StorageError>
where
    S: Stream<Item = Result<Vec<u8>, StorageError>> + Unpin + Send,
{
    let t = store.transfer();
    let part_size = t.part_size_bytes as usize;
    let concurrency = t.part_concurrency;
    let mut parts = Vec::new();
    let mut next_part = 1i32;
    let mut size = buf.len() as u64;
    let mut ended = false;
    loop {
        while !ended && buf.len() < part_size {
            match chunks.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    buf.extend_from_slice(&chunk);
                }
                None => ended = true,
            }
        }
        if buf.is_empty() && (ended && next_part > 1) {
            break;
        }
        let body = if buf.len() > part_size {
            buf.split_to(part_size).freeze()
        } else {
            buf.split().freeze()
        };
        // Backpressure: the stream is not read further until a slot frees up.
        while in_flight.len() >= concurrency {
            parts.push(join_one(in_flight).await?);
        }
        in_flight.spawn(upload_part(
            store.clone(),
            h.key.clone(),
            upload_id.to_owned(),
            next_part,
            body,
        ));
        next_part += 1;
        if ended && buf.is_empty() {
            break;
        }
    }
    while !in_flight.is_empty() {
        parts.push(join_one(in_flight).await?);
    }
    let digest = hex::encode(hasher.finalize());
    check_size(h, size)?;
    check_digest(h, &digest)?;
    Ok((parts, size, digest))
}

async fn join_one(in_flight: &mut JoinSet<PartResult>) -> PartResult {
    match in_flight.join_next().await {
        Some(Ok(part)) => part,
        Some(Err(e)) => Err(StorageError::Internal(format!(
            "part upload task failed: {e}"
        ))),
        None => Err(StorageError::Internal("no part upload in flight".into())),
    }
}

async fn upload_part(
    store: Arc<Store>,
    key: String,
    upload_id: String,
    part_number: i32,
    body: Bytes,
) -> PartResult {
    let _permit = store.permits.acquire().await;
    let out = store
        .s3
        .upload_part()
        .bucket(&store.bucket)
        .key(&key)
        .upload_id(upload_id)
        .part_number(part_number)
        .body(ByteStream::from(body))
        // Integrity comes from the part's CRC32 checksum; signing the payload as well would
        // hash every byte a second time.
        .customize()
        .disable_payload_signing()
        .send()
        .await
        .map_err(describe)?;
    Ok(CompletedPart::builder()
        .part_number(part_number)
        .set_e_tag(out.e_tag().map(str::to_owned))
        .build())
}
