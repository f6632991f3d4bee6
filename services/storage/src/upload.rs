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
    h.sha256 = check_hex_digest("sha256", std::mem::take(&mut h.sha256))?;
    Ok(())
}

fn cache_control(h: &PutHeader) -> Option<&'static str> {
    h.content_addressed.then_some(IMMUTABLE_CACHE_CONTROL)
}

/// One PutObject message after the header.
#[derive(Debug)]
pub enum Piece {
    Chunk(Vec<u8>),
    /// The client's end-of-upload marker, with the SHA-256 it computed while sending (or empty).
    Finish {
        sha256: String,
    },
}

fn check_hex_digest(field: &'static str, digest: String) -> Result<String, StorageError> {
    let digest = digest.to_ascii_lowercase();
    if !digest.is_empty() && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(StorageError::invalid(
            field,
            "must be 64 hex digits (the SHA-256 of the object) or empty",
        ));
    }
    Ok(digest)
}

/// The chunks of one upload, hashed and counted as they are read, and the proof that the stream
/// was complete. A stream that ends early looks exactly like a complete one (a client that maps
/// a broken source to the end of its stream), so bytes are stored only when the client said the
/// upload is over (`finish`) or declared what it would send (`expected_size`, `sha256`).
struct Body<S> {
    pieces: S,
    hasher: Sha256,
    size: u64,
    finish: Option<String>,
}

/// What a verified body was: its length and lowercase hex SHA-256.
struct Verified {
    size: u64,
    sha256: String,
    digest: [u8; 32],
}

impl<S> Body<S>
where
    S: Stream<Item = Result<Piece, StorageError>> + Unpin + Send,
{
    fn new(pieces: S) -> Self {
        Body {
            pieces,
            hasher: Sha256::new(),
            size: 0,
            finish: None,
        }
    }

    /// The next chunk, or `None` once the stream has ended cleanly.
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, StorageError> {
        loop {
            match self.pieces.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(_)) if self.finish.is_some() => {
                    return Err(StorageError::invalid(
                        "finish",
                        "must be the last PutObject message",
                    ));
                }
                Some(Ok(Piece::Finish { sha256 })) => {
                    self.finish = Some(check_hex_digest("finish.sha256", sha256)?);
                }
                Some(Ok(Piece::Chunk(chunk))) => {
                    self.hasher.update(&chunk);
                    self.size += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
            }
        }
    }

    /// Called once the stream has ended: refuses a body that may be incomplete or that differs
    /// from what the client declared.
    fn verify(self, h: &PutHeader) -> Result<Verified, StorageError> {
        if self.finish.is_none() && h.expected_size == 0 && h.sha256.is_empty() {
            return Err(StorageError::invalid(
                "finish",
                "the upload stream ended without a finish message, so it may have been cut short; \
                 send finish last (or declare expected_size or sha256 in the header)",
            ));
        }
        if h.expected_size != 0 && h.expected_size != self.size {
            return Err(StorageError::invalid(
                "expected_size",
                format!(
                    "the header declared {} bytes but {} arrived",
                    h.expected_size, self.size
                ),
            ));
        }
        let digest: [u8; 32] = self.hasher.finalize().into();
        let sha256 = hex::encode(digest);
        for declared in [&h.sha256, self.finish.as_ref().unwrap_or(&String::new())] {
            if !declared.is_empty() && *declared != sha256 {
                return Err(StorageError::ChecksumMismatch {
                    key: h.key.clone(),
                    expected: declared.clone(),
                    actual: sha256,
                });
            }
        }
        Ok(Verified {
            size: self.size,
            sha256,
            digest,
        })
    }
}

pub async fn put<S>(
    store: Arc<Store>,
    mut header: PutHeader,
    pieces: S,
) -> Result<PutOutcome, StorageError>
where
    S: Stream<Item = Result<Piece, StorageError>> + Unpin + Send,
{
    validate_header(&store, &mut header)?;
    let threshold = store.transfer().multipart_threshold_bytes;
    let mut body = Body::new(pieces);
    let mut buf = BytesMut::new();

    if header.expected_size < threshold {
        while (buf.len() as u64) < threshold {
            match body.next_chunk().await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => return single_put(&store, &header, buf.freeze(), body).await,
            }
        }
    }
    multipart(store, header, body, buf).await
}

async fn single_put<S>(
    store: &Store,
    h: &PutHeader,
    bytes: Bytes,
    body: Body<S>,
) -> Result<PutOutcome, StorageError>
where
    S: Stream<Item = Result<Piece, StorageError>> + Unpin + Send,
{
    // Verified before anything is written: a refused body leaves no object behind.
    let v = body.verify(h)?;
    let out = store
        .s3
        .put_object()
        .bucket(&store.bucket)
        .key(&h.key)
        .content_type(&h.content_type)
        .set_cache_control(cache_control(h).map(str::to_owned))
        .metadata(SHA256_METADATA, &v.sha256)
        // The store re-hashes the body and refuses it if a byte changed on the way.
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(v.digest))
        .body(ByteStream::from(bytes))
        .send()
        .await
        .map_err(describe)?;
    Ok(PutOutcome {
        object: object_meta(h, v, out.e_tag().unwrap_or_default().to_owned()),
        parts: 1,
    })
}

fn object_meta(h: &PutHeader, v: Verified, etag: String) -> ObjectMeta {
    ObjectMeta {
        key: h.key.clone(),
        size: v.size,
        content_type: h.content_type.clone(),
        etag,
        sha256: v.sha256,
        cache_control: cache_control(h).unwrap_or_default().to_owned(),
        ..ObjectMeta::default()
    }
}

async fn multipart<S>(
    store: Arc<Store>,
    h: PutHeader,
    body: Body<S>,
    buf: BytesMut,
) -> Result<PutOutcome, StorageError>
where
    S: Stream<Item = Result<Piece, StorageError>> + Unpin + Send,
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
    let (mut parts, v) = match upload_parts(&store, &h, &upload_id, body, buf, &mut in_flight).await
    {
        Ok(done) => done,
        Err(e) => {
            // Parts still uploading would land after the abort and orphan themselves.
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
            store.abort(&h.key, &upload_id).await;
            return Err(e);
        }
    };
    parts.sort_by_key(|p| p.part_number());
    let count = parts.len() as u32;
    let mut etag = store.complete(&h.key, &upload_id, parts).await?;
    let object = if h.sha256.is_empty() {
        // The digest is known only now, after CreateMultipartUpload fixed the metadata: restate
        // it by copy-in-place. Clients that declare sha256 in the header save this copy.
        let meta = object_meta(&h, v, String::new());
        etag = match store.restate_metadata(&meta).await {
            Ok(etag) => etag,
            Err(e) => {
                // An object without its digest would break the contract of every later read.
                if let Err(cleanup) = store.delete(&h.key).await {
                    tracing::warn!(key = %h.key, error = %cleanup, "could not remove an object whose sha256 was not stored");
                }
                return Err(e);
            }
        };
        ObjectMeta { etag, ..meta }
    } else {
        object_meta(&h, v, etag)
    };
    Ok(PutOutcome {
        object,
        parts: count,
    })
}

type PartResult = Result<CompletedPart, StorageError>;

async fn upload_parts<S>(
    store: &Arc<Store>,
    h: &PutHeader,
    upload_id: &str,
    mut body: Body<S>,
    mut buf: BytesMut,
    in_flight: &mut JoinSet<PartResult>,
) -> Result<(Vec<CompletedPart>, Verified), StorageError>
where
    S: Stream<Item = Result<Piece, StorageError>> + Unpin + Send,
{
    let t = store.transfer();
    let part_size = t.part_size_bytes as usize;
    let concurrency = t.part_concurrency;
    let mut parts = Vec::new();
    let mut next_part = 1i32;
    let mut ended = false;
    loop {
        while !ended && buf.len() < part_size {
            match body.next_chunk().await? {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => ended = true,
            }
        }
        // Full parts go up as they fill; the last one waits until the body is verified.
        if ended && buf.len() <= part_size {
            break;
        }
        let body_part = buf.split_to(part_size).freeze();
        // Backpressure: the stream is not read further until a slot frees up.
        while in_flight.len() >= concurrency {
            parts.push(join_one(in_flight).await?);
        }
        in_flight.spawn(tracing::Instrument::in_current_span(upload_part(
            store.clone(),
            h.key.clone(),
            upload_id.to_owned(),
            next_part,
            body_part,
        )));
        next_part += 1;
    }
    let v = body.verify(h)?;
    if !buf.is_empty() || next_part == 1 {
        while in_flight.len() >= concurrency {
            parts.push(join_one(in_flight).await?);
        }
        in_flight.spawn(tracing::Instrument::in_current_span(upload_part(
            store.clone(),
            h.key.clone(),
            upload_id.to_owned(),
            next_part,
            buf.freeze(),
        )));
    }
    while !in_flight.is_empty() {
        parts.push(join_one(in_flight).await?);
    }
    Ok((parts, v))
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
