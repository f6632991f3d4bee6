//! The tonic service: translates proto <-> domain and maps errors; the work is in `store` and
//! `upload`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::{Stream, StreamExt};
use photos_proto::storage::v1 as pb;
use photos_proto::storage::v1::storage_service_server::StorageService;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::error::StorageError;
use crate::store::{self, IncompleteUpload, KeyFailure, ObjectMeta, Rule, StorageClass, Store};
use crate::upload::{self, Piece, PutHeader};
use crate::urls;

pub struct StorageGrpc {
    pub store: Arc<Store>,
}

fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn class_to_pb(c: Option<StorageClass>) -> i32 {
    (match c {
        None => pb::StorageClass::Unspecified,
        Some(StorageClass::Standard) => pb::StorageClass::Standard,
        Some(StorageClass::StandardIa) => pb::StorageClass::StandardIa,
        Some(StorageClass::Glacier) => pb::StorageClass::Glacier,
    }) as i32
}

fn class_from_pb(c: i32, required: bool) -> Result<Option<StorageClass>, StorageError> {
    match pb::StorageClass::try_from(c) {
        Ok(pb::StorageClass::Unspecified) if !required => Ok(None),
        Ok(pb::StorageClass::Standard) => Ok(Some(StorageClass::Standard)),
        Ok(pb::StorageClass::StandardIa) => Ok(Some(StorageClass::StandardIa)),
        Ok(pb::StorageClass::Glacier) => Ok(Some(StorageClass::Glacier)),
        _ => Err(StorageError::invalid(
            "storage_class",
            "must be STANDARD, STANDARD_IA or GLACIER",
        )),
    }
}

fn info(m: ObjectMeta) -> pb::ObjectInfo {
    pb::ObjectInfo {
        key: m.key,
        size: m.size,
        content_type: m.content_type,
        etag: m.etag,
        sha256: m.sha256,
        storage_class: class_to_pb(m.storage_class),
        cache_control: m.cache_control,
        last_modified: m.last_modified.map(timestamp),
    }
}

fn incomplete(u: IncompleteUpload) -> pb::IncompleteUpload {
    pb::IncompleteUpload {
        key: u.key,
        upload_id: u.upload_id,
        initiated: u.initiated.map(timestamp),
    }
}

fn key_errors(f: Vec<KeyFailure>) -> Vec<pb::KeyError> {
    f.into_iter()
        .map(|f| pb::KeyError {
            key: f.key,
            code: f.code,
            message: f.message,
        })
        .collect()
}

fn rule_from_pb(r: pb::LifecycleRule) -> Rule {
    Rule {
        id: r.id,
        prefix: r.prefix,
        transition_to_ia_days: r.transition_to_ia_days,
        transition_to_glacier_days: r.transition_to_glacier_days,
        expiration_days: r.expiration_days,
        abort_incomplete_multipart_days: r.abort_incomplete_multipart_days,
    }
}

fn rule_to_pb(r: Rule) -> pb::LifecycleRule {
    pb::LifecycleRule {
        id: r.id,
        prefix: r.prefix,
        transition_to_ia_days: r.transition_to_ia_days,
        transition_to_glacier_days: r.transition_to_glacier_days,
        expiration_days: r.expiration_days,
        abort_incomplete_multipart_days: r.abort_incomplete_multipart_days,
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl StorageService for StorageGrpc {
    async fn put_object(
        &self,
        request: Request<Streaming<pb::PutObjectRequest>>,
    ) -> Result<Response<pb::PutObjectResponse>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::PutObjectRequest {
                part: Some(pb::put_object_request::Part::Header(h)),
            })) => h,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(StorageError::invalid(
                    "header",
                    "the first PutObject message must be the header",
                )
                .into());
            }
        };
        let header = PutHeader {
            key: header.key,
            content_type: header.content_type,
            content_addressed: header.content_addressed,
            expected_size: header.expected_size,
            sha256: header.sha256,
        };
        let pieces = stream.map(|m| match m {
            Ok(pb::PutObjectRequest {
                part: Some(pb::put_object_request::Part::Chunk(c)),
            }) => Ok(Piece::Chunk(c)),
            Ok(pb::PutObjectRequest {
                part: Some(pb::put_object_request::Part::Finish(f)),
            }) => Ok(Piece::Finish { sha256: f.sha256 }),
            Ok(_) => Err(StorageError::invalid(
                "chunk",
                "only the first PutObject message may be a header",
            )),
            // tonic says OUT_OF_RANGE for a message over the limit; it is a size limit.
            Err(status) if photos_runtime::layers::is_over_limit(&status) => Err(
                StorageError::TooLarge(format!("PutObject message refused: {}", status.message())),
            ),
            Err(status) => Err(StorageError::invalid(
                "stream",
                format!("the upload stream broke: {}", status.message()),
            )),
        });
        // A task of its own: if the caller goes away mid-upload, the upload still gets aborted
        // instead of being dropped with its parts left behind.
        let store = self.store.clone();
        // The task keeps the call's span, so its S3 calls stay in the caller's trace.
        let outcome = tokio::spawn(tracing::Instrument::instrument(
            async move { upload::put(store, header, pieces).await },
            tracing::Span::current(),
        ))
        .await
        .map_err(|e| StorageError::Internal(format!("upload task failed: {e}")))??;
        Ok(Response::new(pb::PutObjectResponse {
            object: Some(info(outcome.object)),
            parts: outcome.parts,
        }))
    }

    async fn get_object(
        &self,
        request: Request<pb::GetObjectRequest>,
    ) -> Result<Response<BoxStream<pb::GetObjectResponse>>, Status> {
        let req = request.into_inner();
        let range = req.range.map(|r| (r.start, r.end));
        let (meta, mut body) = self.store.get(&req.key, range).await?;
        let chunk_size = self.store.transfer().read_chunk_bytes;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let first = pb::GetObjectResponse {
                part: Some(pb::get_object_response::Part::Object(info(meta))),
            };
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            while let Some(next) = body.next().await {
                match next {
                    Ok(bytes) => {
                        for piece in bytes.chunks(chunk_size) {
                            let msg = pb::GetObjectResponse {
                                part: Some(pb::get_object_response::Part::Chunk(piece.to_vec())),
                            };
                            if tx.send(Ok(msg)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let status: Status =
                            StorageError::S3(format!("reading the object failed: {e}")).into();
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn head_object(
        &self,
        request: Request<pb::HeadObjectRequest>,
    ) -> Result<Response<pb::HeadObjectResponse>, Status> {
        let meta = self.store.head(&request.into_inner().key).await?;
        Ok(Response::new(pb::HeadObjectResponse {
            object: Some(info(meta)),
        }))
    }

    async fn delete_object(
        &self,
        request: Request<pb::DeleteObjectRequest>,
    ) -> Result<Response<pb::DeleteObjectResponse>, Status> {
        self.store.delete(&request.into_inner().key).await?;
        Ok(Response::new(pb::DeleteObjectResponse {}))
    }

    async fn delete_objects(
        &self,
        request: Request<pb::DeleteObjectsRequest>,
    ) -> Result<Response<pb::DeleteObjectsResponse>, Status> {
        let out = self.store.delete_many(request.into_inner().keys).await?;
        Ok(Response::new(pb::DeleteObjectsResponse {
            deleted: out.deleted,
            errors: key_errors(out.errors),
            requests: out.requests,
        }))
    }

    async fn copy_objects(
        &self,
        request: Request<pb::CopyObjectsRequest>,
    ) -> Result<Response<pb::CopyObjectsResponse>, Status> {
        let req = request.into_inner();
        let class = class_from_pb(req.storage_class, false)?;
        let pairs = req
            .pairs
            .into_iter()
            .map(|p| (p.source_key, p.destination_key))
            .collect();
        let out = self.store.copy_many(pairs, class).await?;
        Ok(Response::new(pb::CopyObjectsResponse {
            copied: out.copied,
            errors: key_errors(out.errors),
        }))
    }

    async fn set_storage_class(
        &self,
        request: Request<pb::SetStorageClassRequest>,
    ) -> Result<Response<pb::SetStorageClassResponse>, Status> {
        let req = request.into_inner();
        let class = class_from_pb(req.storage_class, true)?.unwrap_or(StorageClass::Standard);
        let out = self.store.set_storage_class(req.keys, class).await?;
        Ok(Response::new(pb::SetStorageClassResponse {
            changed: out.copied,
            errors: key_errors(out.errors),
        }))
    }

    async fn list_objects(
        &self,
        request: Request<pb::ListObjectsRequest>,
    ) -> Result<Response<BoxStream<pb::ListObjectsResponse>>, Status> {
        let req = request.into_inner();
        let older_than = (req.older_than_days > 0).then(|| {
            SystemTime::now() - Duration::from_secs(u64::from(req.older_than_days) * 86_400)
        });
        let pages = self.store.list(&req.prefix, older_than)?;
        let stream = pages.filter_map(|page| async move {
            match page {
                Ok(objects) if objects.is_empty() => None,
                Ok(objects) => Some(Ok(pb::ListObjectsResponse {
                    objects: objects.into_iter().map(info).collect(),
                })),
                Err(e) => Some(Err(Status::from(e))),
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_object_url(
        &self,
        request: Request<pb::GetObjectUrlRequest>,
    ) -> Result<Response<pb::GetObjectUrlResponse>, Status> {
        let req = request.into_inner();
        self.store.check_key(&req.key)?;
        let urls_config = &self.store.config.urls;
        let (url, expires) = match pb::UrlKind::try_from(req.kind) {
            Ok(pb::UrlKind::Public) => (urls::public_url(urls_config, &req.key)?, None),
            Ok(pb::UrlKind::S3Presigned) => {
                let ttl = urls::expiry(urls_config, req.expires_in_seconds)?;
                let (url, at) = self.store.presign_get(&req.key, ttl).await?;
                (url, Some(at))
            }
            Ok(pb::UrlKind::CdnSigned) => {
                let signer = self.store.cloudfront.as_ref().ok_or_else(|| {
                    StorageError::FailedPrecondition(
                        "CloudFront signing is not configured: set urls.cloudfront_key_pair_id and urls.cloudfront_private_key_pem".into(),
                    )
                })?;
                let ttl = urls::expiry(urls_config, req.expires_in_seconds)?;
                let resource = urls::public_url(urls_config, &req.key)?;
                let (url, at) = signer.sign(&resource, ttl)?;
                (url, Some(at))
            }
            _ => {
                return Err(StorageError::invalid(
                    "kind",
                    "must be PUBLIC, S3_PRESIGNED or CDN_SIGNED",
                )
                .into());
            }
        };
        Ok(Response::new(pb::GetObjectUrlResponse {
            url,
            expire_time: expires.map(timestamp),
        }))
    }

    async fn put_lifecycle(
        &self,
        request: Request<pb::PutLifecycleRequest>,
    ) -> Result<Response<pb::PutLifecycleResponse>, Status> {
        let rules = request
            .into_inner()
            .rules
            .into_iter()
            .map(rule_from_pb)
            .collect();
        self.store.put_lifecycle(rules).await?;
        Ok(Response::new(pb::PutLifecycleResponse {}))
    }

    async fn get_lifecycle(
        &self,
        _request: Request<pb::GetLifecycleRequest>,
    ) -> Result<Response<pb::GetLifecycleResponse>, Status> {
        let rules = self.store.get_lifecycle().await?;
        Ok(Response::new(pb::GetLifecycleResponse {
            rules: rules.into_iter().map(rule_to_pb).collect(),
        }))
    }

    async fn delete_lifecycle(
        &self,
        _request: Request<pb::DeleteLifecycleRequest>,
    ) -> Result<Response<pb::DeleteLifecycleResponse>, Status> {
        self.store.delete_lifecycle().await?;
        Ok(Response::new(pb::DeleteLifecycleResponse {}))
    }

    async fn abort_incomplete_uploads(
        &self,
        request: Request<pb::AbortIncompleteUploadsRequest>,
    ) -> Result<Response<pb::AbortIncompleteUploadsResponse>, Status> {
        let req = request.into_inner();
        if req.older_than_seconds == 0 && !req.dry_run && !req.include_in_flight {
            return Err(StorageError::invalid(
                "older_than_seconds",
                "0 would abort uploads that may be running right now: give an age (e.g. 86400) \
                 or set include_in_flight",
            )
            .into());
        }
        let max_uploads = match req.max_uploads as usize {
            0 => store::SWEEP_DEFAULT_UPLOADS,
            n if n > store::SWEEP_MAX_UPLOADS => {
                return Err(StorageError::invalid(
                    "max_uploads",
                    format!(
                        "must be at most {} (0: {}); go on with the returned markers",
                        store::SWEEP_MAX_UPLOADS,
                        store::SWEEP_DEFAULT_UPLOADS
                    ),
                )
                .into());
            }
            n => n,
        };
        let cutoff = (req.older_than_seconds > 0)
            .then(|| SystemTime::now() - Duration::from_secs(u64::from(req.older_than_seconds)));
        let out = self
            .store
            .abort_incomplete(store::SweepRequest {
                prefix: req.prefix,
                initiated_before: cutoff,
                dry_run: req.dry_run,
                max_uploads,
                start_after: (!req.key_marker.is_empty() || !req.upload_id_marker.is_empty())
                    .then_some(store::UploadMarker {
                        key: req.key_marker,
                        upload_id: req.upload_id_marker,
                    }),
            })
            .await?;
        let (next_key_marker, next_upload_id_marker) =
            out.next.map(|m| (m.key, m.upload_id)).unwrap_or_default();
        Ok(Response::new(pb::AbortIncompleteUploadsResponse {
            uploads: out.uploads.into_iter().map(incomplete).collect(),
            already_gone: out.already_gone.into_iter().map(incomplete).collect(),
            next_key_marker,
            next_upload_id_marker,
            errors: key_errors(out.errors),
        }))
    }
}
