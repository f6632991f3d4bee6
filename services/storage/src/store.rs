//! The object store: every S3 call the service makes, free of proto types.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, CompletedMultipartUpload,
    CompletedPart, Delete, ExpirationStatus, LifecycleExpiration, LifecycleRule,
    LifecycleRuleFilter, MetadataDirective, ObjectIdentifier, StorageClass as S3Class, Transition,
    TransitionStorageClass,
};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use crate::config::{S3Config, StorageConfig, TransferConfig};
use crate::error::{StorageError, describe};
use crate::keys;
use crate::urls;

/// Metadata key holding the lowercase hex SHA-256 of the object's bytes.
pub const SHA256_METADATA: &str = "sha256";
pub const IMMUTABLE_CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageClass {
    Standard,
    StandardIa,
    Glacier,
}

impl StorageClass {
    fn to_s3(self) -> S3Class {
        match self {
            StorageClass::Standard => S3Class::Standard,
            StorageClass::StandardIa => S3Class::StandardIa,
            StorageClass::Glacier => S3Class::Glacier,
        }
    }

    fn from_s3(class: Option<&S3Class>) -> Option<StorageClass> {
        match class {
            None | Some(S3Class::Standard) => Some(StorageClass::Standard),
            Some(S3Class::StandardIa) => Some(StorageClass::StandardIa),
            Some(S3Class::Glacier) => Some(StorageClass::Glacier),
            Some(_) => None,
        }
    }

    fn from_str(class: Option<&str>) -> Option<StorageClass> {
        StorageClass::from_s3(class.map(S3Class::from).as_ref())
    }
}

#[derive(Debug, Clone, Default)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub content_type: String,
    pub etag: String,
    pub sha256: String,
    pub storage_class: Option<StorageClass>,
    pub cache_control: String,
    pub last_modified: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct KeyFailure {
    pub key: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct DeleteOutcome {
    pub deleted: u32,
    pub errors: Vec<KeyFailure>,
    pub requests: u32,
}

#[derive(Debug, Default)]
pub struct CopyOutcome {
    pub copied: u32,
    pub errors: Vec<KeyFailure>,
}

/// A multipart upload that was started and never completed or aborted.
#[derive(Debug, Clone)]
pub struct IncompleteUpload {
    pub key: String,
    pub upload_id: String,
    pub initiated: Option<SystemTime>,
}

/// Where a sweep goes on: the store's key-marker and upload-id-marker, passed back as the
/// store gave them (either may be empty: SeaweedFS gives only an upload id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadMarker {
    pub key: String,
    pub upload_id: String,
}

/// One bounded sweep call.
#[derive(Debug, Clone)]
pub struct SweepRequest {
    pub prefix: String,
    /// Only uploads initiated before this; `None`: all of them.
    pub initiated_before: Option<SystemTime>,
    pub dry_run: bool,
    /// The most uploads this call acts on, 1..=[`SWEEP_MAX_UPLOADS`].
    pub max_uploads: usize,
    pub start_after: Option<UploadMarker>,
}

#[derive(Debug, Default)]
pub struct SweepOutcome {
    /// Aborted, or with `dry_run` found.
    pub uploads: Vec<IncompleteUpload>,
    /// Listed, then NoSuchUpload when aborted: someone else completed or aborted it meanwhile.
    pub already_gone: Vec<IncompleteUpload>,
    pub errors: Vec<KeyFailure>,
    /// Set when the call stopped with uploads under the prefix still unexamined.
    pub next: Option<UploadMarker>,
}

/// What one AbortMultipartUpload came to.
#[derive(Debug)]
pub enum AbortResult {
    Aborted,
    /// NoSuchUpload: completed or aborted by someone else since the listing.
    AlreadyGone,
    Failed(KeyFailure),
}

/// Whether an AbortMultipartUpload error means the upload no longer exists. A 404 for the
/// bucket (NoSuchBucket) is a real failure, not an upload that is gone.
/// Only the NoSuchUpload code says so: a bare 404 may be a proxy's or a misrouted endpoint's
/// answer, and counting it as gone would hide a sweep that aborts nothing.
pub fn abort_error_means_gone(_status: Option<u16>, code: Option<&str>) -> bool {
    code == Some("NoSuchUpload")
}

/// What a failed ListMultipartUploads means to the caller. A 501 alone (a proxy, a gateway)
/// is not proof the store lacks the call: only the NotImplemented code stops a schedule.
/// 400-class answers are the caller's or the deployment's to fix, not a store outage.
/// `caller_marker`: the listing started from markers the caller passed in (the call's first
/// page), so a 400 most likely means those markers.
pub fn list_uploads_error(
    status: Option<u16>,
    code: Option<&str>,
    detail: String,
    caller_marker: bool,
) -> StorageError {
    match (code, status) {
        (Some("NotImplemented"), _) => StorageError::Unsupported(
            "the object store does not implement ListMultipartUploads: only the bucket's \
             abort-incomplete lifecycle rule can remove abandoned uploads"
                .to_owned(),
        ),
        (Some("AccessDenied" | "NoSuchBucket" | "AllAccessDisabled" | "InvalidAccessKeyId"), _)
        | (_, Some(403)) => StorageError::FailedPrecondition(format!(
            "the object store refused to list multipart uploads (check the bucket and the \
             credentials' permissions): {detail}"
        )),
        // A 400 the SDK retries: a slow connection, not the request's fault.
        (Some("RequestTimeout"), _) => StorageError::S3(detail),
        (_, Some(400)) if caller_marker => StorageError::invalid(
            "key_marker",
            format!(
                "the object store refused the listing (a marker not from a previous call?): {detail}"
            ),
        ),
        (_, Some(400)) => StorageError::FailedPrecondition(format!(
            "the object store refused to list multipart uploads (check the bucket name, region              and credentials): {detail}"
        )),
        (Some(_), Some(404)) => StorageError::FailedPrecondition(format!(
            "the object store could not list multipart uploads: {detail}"
        )),
        _ => StorageError::S3(detail),
    }
}

/// Uploads one sweep call acts on when the caller names no number.
pub const SWEEP_DEFAULT_UPLOADS: usize = 1000;
/// The most uploads one sweep call may be asked to act on: what fits the server's request
/// deadline (`server.request_timeout_ms`, 30 s). Aborts go `transfer.delete_concurrency` (4)
/// at a time; at 50 ms each, 1000 take about 12.5 s plus the listing, where 10,000 would
/// take two minutes and be cut off with nothing reported. More: go on from the markers.
pub const SWEEP_MAX_UPLOADS: usize = 1000;
/// ListMultipartUploads pages (up to 1000 uploads each) one sweep call reads at most, so a call
/// over a listing of mostly young uploads, or a store that keeps answering "truncated", stays
/// bounded; the caller goes on from the returned marker.
pub const SWEEP_PAGES_PER_CALL: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    pub prefix: String,
    pub transition_to_ia_days: u32,
    pub transition_to_glacier_days: u32,
    pub expiration_days: u32,
    pub abort_incomplete_multipart_days: u32,
}

pub struct Store {
    pub s3: aws_sdk_s3::Client,
    pub bucket: String,
    pub config: StorageConfig,
    /// Bounds S3 requests in flight from fan-out work (parts, copies, deletes) to the pool size.
    pub permits: Arc<Semaphore>,
    pub cloudfront: Option<urls::CloudFrontSigner>,
}

fn to_system_time(t: Option<&DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

fn is_not_found<E>(e: &aws_sdk_s3::error::SdkError<E>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// `bucket/key` for x-amz-copy-source, with the key percent-encoded as S3 requires.
fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", urls::encode_path(key))
}

/// Builds an S3 client for `config`: static credentials when given, else the standard AWS chain;
/// one rustls/hyper 1 stack with the configured pool, retries and timeouts.
pub async fn s3_client(config: &S3Config) -> aws_sdk_s3::Client {
    s3_client_with(config, crate::telemetry::S3Telemetry::default()).await
}

/// As [`s3_client`], reporting every operation to `telemetry` (spans and `/metrics`).
pub async fn s3_client_with(
    config: &S3Config,
    telemetry: crate::telemetry::S3Telemetry,
) -> aws_sdk_s3::Client {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    use aws_smithy_http_client::tls;

    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .pool_max_idle_per_host(config.pool_size)
        .build_https();
    let retry = match config.retry_mode {
        crate::config::RetryMode::Standard => RetryConfig::standard(),
        crate::config::RetryMode::Adaptive => RetryConfig::adaptive(),
    }
    .with_max_attempts(config.max_attempts);
    let mut timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .read_timeout(Duration::from_millis(config.read_timeout_ms));
    if config.attempt_timeout_ms > 0 {
        timeouts =
            timeouts.operation_attempt_timeout(Duration::from_millis(config.attempt_timeout_ms));
    }
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(config.region.clone()))
        .http_client(http)
        .retry_config(retry)
        .timeout_config(timeouts.build());
    if !config.access_key.is_empty() {
        loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
            config.access_key.expose(),
            config.secret_key.expose(),
            None,
            None,
            "photos-config",
        ));
    }
    if !config.endpoint.is_empty() {
        loader = loader.endpoint_url(&config.endpoint);
    }
    let shared = loader.load().await;
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.force_path_style)
        .accelerate(config.accelerate)
        .interceptor(telemetry)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

impl Store {
    pub fn new(s3: aws_sdk_s3::Client, config: StorageConfig) -> Result<Store, StorageError> {
        Ok(Store {
            s3,
            bucket: config.s3.bucket.clone(),
            permits: Arc::new(Semaphore::new(config.s3.pool_size)),
            cloudfront: urls::CloudFrontSigner::from_config(&config.urls)?,
            config,
        })
    }

    pub fn transfer(&self) -> &TransferConfig {
        &self.config.transfer
    }

    pub fn check_key(&self, key: &str) -> Result<(), StorageError> {
        keys::validate_key(&self.config.keys, key)
    }

    pub async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        self.check_key(key)?;
        let out = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                if is_not_found(&e) {
                    StorageError::NotFound {
                        key: key.to_owned(),
                    }
                } else {
                    describe(e)
                }
            })?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            content_type: out.content_type().unwrap_or_default().to_owned(),
            etag: out.e_tag().unwrap_or_default().to_owned(),
            sha256: out
                .metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .cloned()
                .unwrap_or_default(),
            storage_class: StorageClass::from_s3(out.storage_class()),
            cache_control: out.cache_control().unwrap_or_default().to_owned(),
            last_modified: to_system_time(out.last_modified()),
        })
    }

    /// Opens `key` (optionally a byte range, inclusive end; `end == 0` means to the end).
    pub async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> Result<(ObjectMeta, ByteStream), StorageError> {
        self.check_key(key)?;
        let mut req = self.s3.get_object().bucket(&self.bucket).key(key);
        if let Some((start, end)) = range {
            if end != 0 && end < start {
                return Err(StorageError::invalid(
                    "range",
                    format!("end {end} is before start {start}"),
                ));
            }
            req = req.range(if end == 0 {
                format!("bytes={start}-")
            } else {
                format!("bytes={start}-{end}")
            });
        }
        let out = req.send().await.map_err(|e| {
            if is_not_found(&e) {
                StorageError::NotFound {
                    key: key.to_owned(),
                }
            } else if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) {
                StorageError::invalid("range", "starts beyond the end of the object")
            } else if e
                .as_service_error()
                .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                == Some("InvalidObjectState")
            {
                StorageError::FailedPrecondition(format!(
                    "object {key} is archived (GLACIER): restore it before reading"
                ))
            } else {
                describe(e)
            }
        })?;
        // A ranged response's Content-Range carries the whole object's size after the slash.
        let size = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(out.content_length().unwrap_or(0).max(0) as u64);
        let meta = ObjectMeta {
            key: key.to_owned(),
            size,
            content_type: out.content_type().unwrap_or_default().to_owned(),
            etag: out.e_tag().unwrap_or_default().to_owned(),
            sha256: out
                .metadata()
                .and_then(|m| m.get(SHA256_METADATA))
                .cloned()
                .unwrap_or_default(),
            storage_class: StorageClass::from_s3(out.storage_class()),
            cache_control: out.cache_control().unwrap_or_default().to_owned(),
            last_modified: to_system_time(out.last_modified()),
        };
        Ok((meta, out.body))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.check_key(key)?;
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(describe)?;
        Ok(())
    }

    /// Deletes in DeleteObjects batches of at most `transfer.delete_batch_size` keys, several
    /// batches at once; keys the store reports as failed are retried in later requests.
    pub async fn delete_many(&self, mut keys: Vec<String>) -> Result<DeleteOutcome, StorageError> {
        for key in &keys {
            self.check_key(key)?;
        }
        keys.sort_unstable();
        keys.dedup();
        let requests = AtomicU32::new(0);
        let t = self.transfer();
        let batches: Vec<Vec<String>> = keys
            .chunks(t.delete_batch_size)
            .map(<[String]>::to_vec)
            .collect();
        let results: Vec<(u32, Vec<KeyFailure>)> = futures::stream::iter(batches)
            .map(|batch| self.delete_batch(batch, &requests))
            .buffer_unordered(t.delete_concurrency)
            .collect()
            .await;
        let mut outcome = DeleteOutcome {
            requests: requests.load(Ordering::Relaxed),
            ..DeleteOutcome::default()
        };
        for (deleted, errors) in results {
            outcome.deleted += deleted;
            outcome.errors.extend(errors);
        }
        Ok(outcome)
    }

    async fn delete_batch(
        &self,
        batch: Vec<String>,
        requests: &AtomicU32,
    ) -> (u32, Vec<KeyFailure>) {
        let total = batch.len() as u32;
        let mut pending = batch;
        let mut failures = Vec::new();
        for _round in 0..=self.transfer().delete_retries {
            if pending.is_empty() {
                break;
            }
            let objects: Vec<ObjectIdentifier> = pending
                .iter()
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            let delete = match Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
            {
                Ok(d) => d,
                Err(e) => {
                    failures = fail_all(&pending, "InvalidRequest", &e.to_string());
                    break;
                }
            };
            let _permit = self.permits.acquire().await;
            requests.fetch_add(1, Ordering::Relaxed);
            match self
                .s3
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
            {
                Ok(out) => {
                    failures = out
                        .errors()
                        .iter()
                        .map(|e| KeyFailure {
                            key: e.key().unwrap_or_default().to_owned(),
                            code: e.code().unwrap_or_default().to_owned(),
                            message: e.message().unwrap_or_default().to_owned(),
                        })
                        .collect();
                }
                Err(e) => {
                    let message = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                    let code = e
                        .as_service_error()
                        .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
                        .unwrap_or("RequestFailed")
                        .to_owned();
                    failures = fail_all(&pending, &code, &message);
                }
            }
            pending = failures.iter().map(|f| f.key.clone()).collect();
        }
        (total - failures.len() as u32, failures)
    }

    /// Copies each pair, `copy_concurrency` at a time; multipart copy at and above the threshold.
    pub async fn copy_many(
        &self,
        pairs: Vec<(String, String)>,
        class: Option<StorageClass>,
    ) -> Result<CopyOutcome, StorageError> {
        for (src, dst) in &pairs {
            self.check_key(src)?;
            self.check_key(dst)?;
        }
        let results: Vec<Result<(), KeyFailure>> = futures::stream::iter(pairs)
            .map(|(src, dst)| async move {
                self.copy_one(&src, &dst, class)
                    .await
                    .map_err(|e| KeyFailure {
                        key: src.clone(),
                        code: e.kind().as_str().to_owned(),
                        message: e.to_string(),
                    })
            })
            .buffer_unordered(self.transfer().copy_concurrency)
            .collect()
            .await;
        let mut outcome = CopyOutcome::default();
        for r in results {
            match r {
                Ok(()) => outcome.copied += 1,
                Err(f) => outcome.errors.push(f),
            }
        }
        Ok(outcome)
    }

    pub async fn copy_one(
        &self,
        src: &str,
        dst: &str,
        class: Option<StorageClass>,
    ) -> Result<(), StorageError> {
        let source = self.head(src).await?;
        self.copy_from(&source, dst, class).await.map(|_| ())
    }

    /// Writes `meta` (content type, cache control, sha256) onto the object `meta.key` by
    /// copy-in-place; returns the new ETag.
    pub async fn restate_metadata(&self, meta: &ObjectMeta) -> Result<String, StorageError> {
        self.copy_from(meta, &meta.key, None).await
    }

    /// Copies `source` to `dst`; a copy onto itself restates `source`'s metadata. Returns the
    /// destination's ETag.
    async fn copy_from(
        &self,
        source: &ObjectMeta,
        dst: &str,
        class: Option<StorageClass>,
    ) -> Result<String, StorageError> {
        if source.size >= self.transfer().multipart_copy_threshold_bytes {
            return self.multipart_copy(source, dst, class).await;
        }
        let src = source.key.as_str();
        let _permit = self.permits.acquire().await;
        let mut req = self
            .s3
            .copy_object()
            .bucket(&self.bucket)
            .key(dst)
            .copy_source(copy_source(&self.bucket, src));
        req = if src == dst {
            // Copy-in-place restates the metadata: some stores (SeaweedFS) refuse a self-copy
            // whose only change is the storage class, and REPLACE is valid on AWS as well.
            let mut r = req
                .metadata_directive(MetadataDirective::Replace)
                .content_type(&source.content_type);
            if !source.cache_control.is_empty() {
                r = r.cache_control(&source.cache_control);
            }
            if !source.sha256.is_empty() {
                r = r.metadata(SHA256_METADATA, &source.sha256);
            }
            r
        } else {
            req.metadata_directive(MetadataDirective::Copy)
        };
        if let Some(c) = class {
            req = req.storage_class(c.to_s3());
        }
        let out = req.send().await.map_err(describe)?;
        Ok(out
            .copy_object_result()
            .and_then(|r| r.e_tag())
            .unwrap_or_default()
            .to_owned())
    }

    async fn multipart_copy(
        &self,
        source: &ObjectMeta,
        dst: &str,
        class: Option<StorageClass>,
    ) -> Result<String, StorageError> {
        let mut create = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(dst)
            .content_type(&source.content_type);
        if !source.cache_control.is_empty() {
            create = create.cache_control(&source.cache_control);
        }
        if !source.sha256.is_empty() {
            create = create.metadata(SHA256_METADATA, &source.sha256);
        }
        if let Some(c) = class.or(source.storage_class) {
            create = create.storage_class(c.to_s3());
        }
        let upload_id = create
            .send()
            .await
            .map_err(describe)?
            .upload_id
            .ok_or_else(|| {
                StorageError::S3("CreateMultipartUpload returned no upload id".into())
            })?;
        let part_size = self.transfer().copy_part_size_bytes;
        let ranges: Vec<(i32, u64, u64)> = (0..source.size.div_ceil(part_size))
            .map(|i| {
                let start = i * part_size;
                (
                    i as i32 + 1,
                    start,
                    (start + part_size).min(source.size) - 1,
                )
            })
            .collect();
        let src = copy_source(&self.bucket, &source.key);
        let result: Result<Vec<CompletedPart>, StorageError> = futures::stream::iter(ranges)
            .map(|(n, start, end)| {
                let (src, upload_id) = (src.clone(), upload_id.clone());
                async move {
                    let _permit = self.permits.acquire().await;
                    let out = self
                        .s3
                        .upload_part_copy()
                        .bucket(&self.bucket)
                        .key(dst)
                        .upload_id(upload_id)
                        .part_number(n)
                        .copy_source(src)
                        .copy_source_range(format!("bytes={start}-{end}"))
                        .send()
                        .await
                        .map_err(describe)?;
                    let etag = out
                        .copy_part_result()
                        .and_then(|r| r.e_tag())
                        .unwrap_or_default()
                        .to_owned();
                    Ok(CompletedPart::builder().part_number(n).e_tag(etag).build())
                }
            })
            .buffer_unordered(self.transfer().copy_concurrency)
            .try_collect()
            .await;
        match result {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.part_number());
                self.complete(dst, &upload_id, parts).await
            }
            Err(e) => {
                self.abort(dst, &upload_id).await;
                Err(e)
            }
        }
    }

    pub async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<String, StorageError> {
        let out = self
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.e_tag().unwrap_or_default().to_owned()),
            Err(e) => {
                let e = describe(e);
                self.abort(key, upload_id).await;
                Err(e)
            }
        }
    }

    /// Aborts a multipart upload, retrying on its own: the failure that led here (a dropped
    /// connection, a throttled store) may still be in the way, and orphaned parts cost money.
    pub async fn abort(&self, key: &str, upload_id: &str) {
        for attempt in 0..5u32 {
            match self
                .s3
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
            {
                Ok(_) => return,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => return,
                Err(e) => {
                    tracing::warn!(key, upload_id, attempt, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "abort multipart upload failed");
                    tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                }
            }
        }
        tracing::error!(
            key,
            upload_id,
            "multipart upload left behind; the bucket's abort-incomplete lifecycle rule will remove it"
        );
    }

    /// Aborts the multipart uploads under `req.prefix` initiated before `req.initiated_before`
    /// (all of them if `None`), at most `req.max_uploads` of them and at most
    /// [`SWEEP_PAGES_PER_CALL`] listing pages per call: ListMultipartUploads, then
    /// AbortMultipartUpload each; with `dry_run` only lists them.
    /// Pages are listed first and aborted after, so aborting never shifts the listing's markers.
    pub async fn abort_incomplete(&self, req: SweepRequest) -> Result<SweepOutcome, StorageError> {
        keys::validate_prefix(&self.config.keys, &req.prefix)?;
        let max = req.max_uploads.clamp(1, SWEEP_MAX_UPLOADS);
        let mut found = Vec::new();
        let mut marker = req.start_after.clone();
        let mut next = None;
        let mut surplus = false;
        let mut stalled = false;
        for page_number in 1..=SWEEP_PAGES_PER_CALL {
            // A page never holds more uploads than the call may still act on, so the call
            // never stops inside a page and can always hand back the store's own markers:
            // stores differ in what a marker means (AWS lists by key, then upload; SeaweedFS
            // by upload id alone, and answers a key-marker with that key's uploads only).
            let page_size = (max - found.len()).min(1000) as i32;
            let (key_marker, upload_id_marker) = match &marker {
                Some(m) => (
                    (!m.key.is_empty()).then(|| m.key.clone()),
                    (!m.upload_id.is_empty()).then(|| m.upload_id.clone()),
                ),
                None => (None, None),
            };
            let page = self
                .s3
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&req.prefix)
                .max_uploads(page_size)
                .set_key_marker(key_marker)
                .set_upload_id_marker(upload_id_marker)
                .send()
                .await
                .map_err(|e| {
                    let code = e
                        .as_service_error()
                        .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
                        .map(str::to_owned);
                    let status = e.raw_response().map(|r| r.status().as_u16());
                    let detail = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
                    let caller_marker = page_number == 1 && req.start_after.is_some();
                    list_uploads_error(status, code.as_deref(), detail, caller_marker)
                })?;
            let listed = page.uploads();
            for u in listed {
                let (Some(key), Some(upload_id)) = (u.key(), u.upload_id()) else {
                    continue;
                };
                let initiated = to_system_time(u.initiated());
                // With a cutoff, an upload whose start the store does not report is never
                // taken for old.
                let old = match req.initiated_before {
                    None => true,
                    Some(cutoff) => initiated.is_some_and(|t| t < cutoff),
                };
                if !old {
                    continue;
                }
                if found.len() == max {
                    // The store sent more than asked for (it ignored max-uploads): the call
                    // stops at its cap and hands back S3's marker after the last upload taken,
                    // rather than dropping the rest and saying the listing is done.
                    surplus = true;
                    break;
                }
                found.push(IncompleteUpload {
                    key: key.to_owned(),
                    upload_id: upload_id.to_owned(),
                    initiated,
                });
            }
            if surplus {
                tracing::warn!(
                    prefix = %req.prefix,
                    asked = page_size,
                    listed = listed.len(),
                    "the object store listed more multipart uploads than asked for; going on after the last one taken"
                );
                next = found.last().map(|u| UploadMarker {
                    key: u.key.clone(),
                    upload_id: u.upload_id.clone(),
                });
                break;
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            let key = page.next_key_marker().unwrap_or_default();
            let upload_id = page.next_upload_id_marker().unwrap_or_default();
            let resume = if key.is_empty() && upload_id.is_empty() {
                // No markers at all: S3's rule, after the last upload listed.
                listed.last().and_then(|u| {
                    Some(UploadMarker {
                        key: u.key()?.to_owned(),
                        upload_id: u.upload_id().unwrap_or_default().to_owned(),
                    })
                })
            } else {
                Some(UploadMarker {
                    key: key.to_owned(),
                    upload_id: upload_id.to_owned(),
                })
            };
            // Truncated with nowhere to go on from, or no progress: stop rather than loop, and
            // do not report the listing as done (it is not).
            if resume.is_none() || resume == marker {
                stalled = true;
                break;
            }
            marker = resume;
            if found.len() == max || page_number == SWEEP_PAGES_PER_CALL {
                next = marker.clone();
                break;
            }
        }
        let stalled_error = |found: usize| {
            StorageError::S3(format!(
                "the object store answered a truncated multipart-upload listing without a new \
                 marker; {found} uploads were handled, the rest cannot be reached"
            ))
        };
        if req.dry_run {
            if stalled {
                return Err(stalled_error(found.len()));
            }
            return Ok(SweepOutcome {
                uploads: found,
                next,
                ..SweepOutcome::default()
            });
        }
        let handled = found.len();
        let results: Vec<(IncompleteUpload, AbortResult)> = futures::stream::iter(found)
            .map(|u| async move {
                let result = self.abort_listed(&u).await;
                (u, result)
            })
            .buffer_unordered(self.transfer().delete_concurrency)
            .collect()
            .await;
        let mut outcome = SweepOutcome {
            next,
            ..SweepOutcome::default()
        };
        for (upload, result) in results {
            match result {
                AbortResult::Aborted => {
                    tracing::info!(key = %upload.key, upload_id = %upload.upload_id, "aborted an incomplete multipart upload");
                    outcome.uploads.push(upload);
                }
                AbortResult::AlreadyGone => {
                    tracing::info!(key = %upload.key, upload_id = %upload.upload_id, "incomplete multipart upload already gone when aborted");
                    outcome.already_gone.push(upload);
                }
                AbortResult::Failed(f) => outcome.errors.push(f),
            }
        }
        if stalled {
            tracing::warn!(prefix = %req.prefix, aborted = outcome.uploads.len(), "multipart-upload listing stalled");
            return Err(stalled_error(handled));
        }
        Ok(outcome)
    }

    /// One AbortMultipartUpload for an upload a sweep listed.
    async fn abort_listed(&self, u: &IncompleteUpload) -> AbortResult {
        let _permit = self.permits.acquire().await;
        let result = self
            .s3
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(&u.key)
            .upload_id(&u.upload_id)
            .send()
            .await;
        let e = match result {
            Ok(_) => return AbortResult::Aborted,
            Err(e) => e,
        };
        let code = e
            .as_service_error()
            .and_then(|s| aws_sdk_s3::error::ProvideErrorMetadata::code(s))
            .map(str::to_owned);
        let status = e.raw_response().map(|r| r.status().as_u16());
        if abort_error_means_gone(status, code.as_deref()) {
            return AbortResult::AlreadyGone;
        }
        AbortResult::Failed(KeyFailure {
            key: u.key.clone(),
            code: code.unwrap_or_else(|| "RequestFailed".to_owned()),
            message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        })
    }

    pub async fn set_storage_class(
        &self,
        keys: Vec<String>,
        class: StorageClass,
    ) -> Result<CopyOutcome, StorageError> {
        let pairs = keys.into_iter().map(|k| (k.clone(), k)).collect();
        self.copy_many(pairs, Some(class)).await
    }

    /// Streams pages of objects under `prefix` last modified before `older_than` (if given).
    pub fn list(
        &self,
        prefix: &str,
        older_than: Option<SystemTime>,
    ) -> Result<
        impl futures::Stream<Item = Result<Vec<ObjectMeta>, StorageError>> + Send + 'static,
        StorageError,
    > {
        keys::validate_prefix(&self.config.keys, prefix)?;
        let pages = self
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let stream = futures::stream::unfold(pages, |mut pages| async move {
            pages.next().await.map(|page| (page, pages))
        })
        .map(move |page| {
            let page = page.map_err(describe)?;
            Ok(page
                .contents()
                .iter()
                .filter_map(|o| {
                    let last_modified = to_system_time(o.last_modified());
                    if let (Some(cutoff), Some(modified)) = (older_than, last_modified)
                        && modified >= cutoff
                    {
                        return None;
                    }
                    Some(ObjectMeta {
                        key: o.key()?.to_owned(),
                        size: o.size().unwrap_or(0).max(0) as u64,
                        etag: o.e_tag().unwrap_or_default().to_owned(),
                        storage_class: StorageClass::from_str(
                            o.storage_class().map(|c| c.as_str()),
                        ),
                        last_modified,
                        ..ObjectMeta::default()
                    })
                })
                .collect())
        });
        Ok(stream)
    }

    pub async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<(String, SystemTime), StorageError> {
        let presigning = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StorageError::invalid("expires_in_seconds", e.to_string()))?;
        let req = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(describe)?;
        Ok((req.uri().to_owned(), SystemTime::now() + ttl))
    }

    pub async fn put_lifecycle(&self, rules: Vec<Rule>) -> Result<(), StorageError> {
        if rules.is_empty() {
            return Err(StorageError::invalid(
                "rules",
                "must hold at least one rule (use DeleteLifecycle to remove all)",
            ));
        }
        let mut ids = std::collections::HashSet::new();
        let mut s3_rules = Vec::with_capacity(rules.len());
        for r in &rules {
            validate_rule(&self.config.keys, r)?;
            if !ids.insert(r.id.as_str()) {
                return Err(StorageError::invalid(
                    "rules.id",
                    format!("{:?} is used twice", r.id),
                ));
            }
            let mut b = LifecycleRule::builder()
                .id(&r.id)
                .filter(LifecycleRuleFilter::builder().prefix(&r.prefix).build())
                .status(ExpirationStatus::Enabled);
            if r.transition_to_ia_days > 0 {
                b = b.transitions(
                    Transition::builder()
                        .days(r.transition_to_ia_days as i32)
                        .storage_class(TransitionStorageClass::StandardIa)
                        .build(),
                );
            }
            if r.transition_to_glacier_days > 0 {
                b = b.transitions(
                    Transition::builder()
                        .days(r.transition_to_glacier_days as i32)
                        .storage_class(TransitionStorageClass::Glacier)
                        .build(),
                );
            }
            if r.expiration_days > 0 {
                b = b.expiration(
                    LifecycleExpiration::builder()
                        .days(r.expiration_days as i32)
                        .build(),
                );
            }
            if r.abort_incomplete_multipart_days > 0 {
                b = b.abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder()
                        .days_after_initiation(r.abort_incomplete_multipart_days as i32)
                        .build(),
                );
            }
            s3_rules.push(
                b.build()
                    .map_err(|e| StorageError::Internal(e.to_string()))?,
            );
        }
        let config = BucketLifecycleConfiguration::builder()
            .set_rules(Some(s3_rules))
            .build()
            .map_err(|e| StorageError::Internal(e.to_string()))?;
        self.s3
            .put_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .lifecycle_configuration(config)
            .send()
            .await
            .map_err(describe)?;
        Ok(())
    }

    pub async fn get_lifecycle(&self) -> Result<Vec<Rule>, StorageError> {
        let out = match self
            .s3
            .get_bucket_lifecycle_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(describe(e)),
        };
        Ok(out
            .rules()
            .iter()
            .map(|r| {
                let days = |class: TransitionStorageClass| {
                    r.transitions()
                        .iter()
                        .find(|t| t.storage_class() == Some(&class))
                        .and_then(|t| t.days())
                        .unwrap_or(0)
                        .max(0) as u32
                };
                #[allow(deprecated)]
                let prefix = r
                    .filter()
                    .and_then(|f| f.prefix())
                    .or(r.prefix())
                    .unwrap_or_default()
                    .to_owned();
                Rule {
                    id: r.id().unwrap_or_default().to_owned(),
                    prefix,
                    transition_to_ia_days: days(TransitionStorageClass::StandardIa),
                    transition_to_glacier_days: days(TransitionStorageClass::Glacier),
                    expiration_days: r.expiration().and_then(|e| e.days()).unwrap_or(0).max(0)
                        as u32,
                    abort_incomplete_multipart_days: r
                        .abort_incomplete_multipart_upload()
                        .and_then(|a| a.days_after_initiation())
                        .unwrap_or(0)
                        .max(0) as u32,
                }
            })
            .collect())
    }

    pub async fn delete_lifecycle(&self) -> Result<(), StorageError> {
        self.s3
            .delete_bucket_lifecycle()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(describe)?;
        Ok(())
    }
}

fn fail_all(keys: &[String], code: &str, message: &str) -> Vec<KeyFailure> {
    keys.iter()
        .map(|k| KeyFailure {
            key: k.clone(),
            code: code.to_owned(),
            message: message.to_owned(),
        })
        .collect()
}

/// AWS's rules for lifecycle steps: IA no sooner than 30 days, each later step after the one
/// before, so a configuration accepted here is accepted by AWS too.
fn validate_rule(keys_config: &crate::config::KeysConfig, r: &Rule) -> Result<(), StorageError> {
    if r.id.is_empty() || r.id.len() > 255 {
        return Err(StorageError::invalid(
            "rules.id",
            "must be 1 to 255 characters",
        ));
    }
    keys::validate_prefix(keys_config, &r.prefix)
        .map_err(|e| StorageError::invalid("rules.prefix", e.to_string()))?;
    if r.transition_to_ia_days == 0
        && r.transition_to_glacier_days == 0
        && r.expiration_days == 0
        && r.abort_incomplete_multipart_days == 0
    {
        return Err(StorageError::invalid(
            "rules",
            format!(
                "rule {:?} has no step: set at least one of the day counts",
                r.id
            ),
        ));
    }
    if r.transition_to_ia_days != 0 && r.transition_to_ia_days < 30 {
        return Err(StorageError::invalid(
            "rules.transition_to_ia_days",
            "must be at least 30 (S3's minimum for STANDARD_IA)",
        ));
    }
    let ia = r.transition_to_ia_days;
    let glacier = r.transition_to_glacier_days;
    if glacier != 0 && ia != 0 && glacier <= ia {
        return Err(StorageError::invalid(
            "rules.transition_to_glacier_days",
            "must be later than transition_to_ia_days",
        ));
    }
    let last_transition = ia.max(glacier);
    if r.expiration_days != 0 && r.expiration_days <= last_transition {
        return Err(StorageError::invalid(
            "rules.expiration_days",
            "must be later than every transition",
        ));
    }
    Ok(())
}
