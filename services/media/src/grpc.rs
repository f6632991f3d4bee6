//! The tonic service: translates proto <-> pipeline, streams bytes in and out, maps errors.

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use photos_imaging::{Fit, ImageInfo, OutputFormat, Preset, Processed};
use photos_proto::media::v1 as pb;
use photos_proto::media::v1::media_service_server::MediaService;
use photos_proto::storage::v1 as spb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::client::Channel;
use tonic::{Request, Response, Status, Streaming};

use crate::MediaError;
use crate::processor::{self, Processor};

pub struct MediaGrpc {
    pub storage: StorageServiceClient<Channel>,
    pub processor: Arc<Processor>,
    pub upload_chunk_bytes: usize,
}

/// Variant uploads of one photo in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;

fn format_to_pb(f: photos_imaging::Format) -> pb::ImageFormat {
    match f {
        photos_imaging::Format::Jpeg => pb::ImageFormat::Jpeg,
        photos_imaging::Format::Png => pb::ImageFormat::Png,
        photos_imaging::Format::WebP => pb::ImageFormat::Webp,
        photos_imaging::Format::Gif => pb::ImageFormat::Gif,
    }
}

fn output_to_pb(f: OutputFormat) -> pb::ImageFormat {
    match f {
        OutputFormat::Jpeg => pb::ImageFormat::Jpeg,
        OutputFormat::WebP => pb::ImageFormat::Webp,
    }
}

fn output_formats(formats: &[i32]) -> Result<Vec<OutputFormat>, MediaError> {
    let mut out = Vec::new();
    for &f in formats {
        let f = match pb::ImageFormat::try_from(f) {
            Ok(pb::ImageFormat::Jpeg) => OutputFormat::Jpeg,
            Ok(pb::ImageFormat::Webp) => OutputFormat::WebP,
            _ => {
                return Err(MediaError::InvalidArgument(format!(
                    "output format {f} is not produced: use IMAGE_FORMAT_JPEG or IMAGE_FORMAT_WEBP"
                )));
            }
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

fn preset_to_pb(p: &Preset) -> pb::Preset {
    pb::Preset {
        name: p.name.clone(),
        width: p.width,
        height: p.height,
        fit: match p.fit {
            Fit::Inside => pb::FitMode::Inside,
            Fit::Cover => pb::FitMode::Cover,
        } as i32,
        jpeg_quality: u32::from(p.jpeg_quality),
        webp_quality: u32::from(p.webp_quality),
    }
}

pub fn metadata(info: &ImageInfo) -> pb::ImageMetadata {
    pb::ImageMetadata {
        format: format_to_pb(info.format) as i32,
        width: info.width,
        height: info.height,
        orientation: u32::from(info.orientation),
        taken_time: info.taken_at.map(|t| prost_types::Timestamp {
            seconds: t.unix_seconds,
            nanos: 0,
        }),
        content_sha256: info.sha256.clone(),
        bytes: info.bytes,
        has_alpha: info.has_alpha,
        icc_profile_description: info.icc_description.clone().unwrap_or_default(),
    }
}

fn request_options(o: Option<pb::ProcessOptions>) -> Result<processor::Request, MediaError> {
    let o = o.unwrap_or_default();
    Ok(processor::Request {
        presets: o.presets,
        custom: None,
        formats: output_formats(&o.formats)?,
        webp_lossless: o.webp_lossless,
        keep_copyright: o.keep_copyright,
    })
}

impl MediaGrpc {
    fn too_large(&self, bytes: u64) -> MediaError {
        MediaError::TooLarge(format!(
            "image is at least {bytes} bytes, above the limit of {} bytes",
            self.processor.limits().max_bytes
        ))
    }

    /// Appends a chunk, failing as soon as the total passes the limit so an oversize upload
    /// is never buffered whole.
    fn append(&self, body: &mut Vec<u8>, chunk: &[u8]) -> Result<(), MediaError> {
        let total = body.len() as u64 + chunk.len() as u64;
        if total > self.processor.limits().max_bytes {
            return Err(self.too_large(total));
        }
        body.extend_from_slice(chunk);
        Ok(())
    }

    async fn read_stored(&self, key: &str) -> Result<Vec<u8>, MediaError> {
        if key.is_empty() {
            return Err(MediaError::InvalidArgument(
                "source_key is empty: name the stored original".into(),
            ));
        }
        let mut storage = self.storage.clone();
        let mut stream = storage
            .get_object(spb::GetObjectRequest {
                key: key.to_owned(),
                range: None,
            })
            .await
            .map_err(|s| MediaError::storage("get", key, &s))?
            .into_inner();
        let mut body = Vec::new();
        while let Some(msg) = stream
            .try_next()
            .await
            .map_err(|s| MediaError::storage("get", key, &s))?
        {
            match msg.part {
                Some(spb::get_object_response::Part::Object(o)) => {
                    if o.size > self.processor.limits().max_bytes {
                        return Err(self.too_large(o.size));
                    }
                    body.reserve(o.size as usize);
                }
                Some(spb::get_object_response::Part::Chunk(c)) => self.append(&mut body, &c)?,
                None => {}
            }
        }
        Ok(body)
    }

    async fn put(
        &self,
        key: String,
        content_type: &'static str,
        bytes: Vec<u8>,
    ) -> Result<(), MediaError> {
        let header = spb::PutObjectRequest {
            part: Some(spb::put_object_request::Part::Header(
                spb::PutObjectHeader {
                    key: key.clone(),
                    content_type: content_type.to_owned(),
                    content_addressed: true,
                    expected_size: bytes.len() as u64,
                    sha256: photos_imaging::content_sha256(&bytes),
                },
            )),
        };
        let chunk = self.upload_chunk_bytes;
        let chunks: Vec<spb::PutObjectRequest> = bytes
            .chunks(chunk)
            .map(|c| spb::PutObjectRequest {
                part: Some(spb::put_object_request::Part::Chunk(c.to_vec())),
            })
            .collect();
        let stream = futures::stream::iter(std::iter::once(header).chain(chunks));
        let mut storage = self.storage.clone();
        storage
            .put_object(stream)
            .await
            .map_err(|s| MediaError::storage("put", &key, &s))?;
        Ok(())
    }

    /// Writes every variant through the storage service; returns their descriptors.
    async fn write(
        &self,
        processed: &mut Processed,
    ) -> Result<Vec<pb::VariantDescriptor>, MediaError> {
        let variants = std::mem::take(&mut processed.variants);
        let descriptors: Vec<pb::VariantDescriptor> = variants
            .iter()
            .map(|v| pb::VariantDescriptor {
                preset: v.preset.clone(),
                format: output_to_pb(v.format) as i32,
                object_key: v.key.clone(),
                width: v.width,
                height: v.height,
                bytes: v.bytes.len() as u64,
            })
            .collect();
        futures::stream::iter(variants)
            .map(|v| self.put(v.key, v.format.content_type(), v.bytes))
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(descriptors)
    }

    async fn process_and_write(
        &self,
        body: Vec<u8>,
        req: processor::Request,
    ) -> Result<
        (
            pb::ImageMetadata,
            pb::Placeholders,
            Vec<pb::VariantDescriptor>,
        ),
        MediaError,
    > {
        let options = self.processor.options(&req)?;
        let mut processed = self.processor.process(Arc::new(body), options).await?;
        let variants = self.write(&mut processed).await?;
        let p = &processed.placeholders;
        Ok((
            metadata(&processed.info),
            pb::Placeholders {
                dominant_color: p.dominant_color.clone(),
                blur_data_uri: p.blur_data_uri.clone(),
                blurhash: p.blurhash.clone(),
                thumbhash: p.thumbhash.clone(),
            },
            variants,
        ))
    }
}

#[tonic::async_trait]
impl MediaService for MediaGrpc {
    async fn process_image(
        &self,
        request: Request<Streaming<pb::ProcessImageRequest>>,
    ) -> Result<Response<pb::ProcessImageResponse>, Status> {
        let mut stream = request.into_inner();
        let header = match stream.message().await? {
            Some(pb::ProcessImageRequest {
                part: Some(pb::process_image_request::Part::Header(h)),
            }) => h,
            _ => {
                return Err(MediaError::InvalidArgument(
                    "the first message must be the header (options), then the image chunks".into(),
                )
                .into());
            }
        };
        if header.expected_bytes > self.processor.limits().max_bytes {
            return Err(self.too_large(header.expected_bytes).into());
        }
        let req = request_options(header.options)?;
        // Reject unknown presets before reading the body.
        self.processor.options(&req)?;
        let mut body = Vec::with_capacity(header.expected_bytes as usize);
        while let Some(msg) = stream.message().await? {
            match msg.part {
                Some(pb::process_image_request::Part::Chunk(c)) => self.append(&mut body, &c)?,
                Some(pb::process_image_request::Part::Header(_)) => {
                    return Err(MediaError::InvalidArgument(
                        "a second header arrived: send one header, then only chunks".into(),
                    )
                    .into());
                }
                None => {}
            }
        }
        let (metadata, placeholders, variants) = self.process_and_write(body, req).await?;
        Ok(Response::new(pb::ProcessImageResponse {
            metadata: Some(metadata),
            placeholders: Some(placeholders),
            variants,
        }))
    }

    async fn process_stored_image(
        &self,
        request: Request<pb::ProcessStoredImageRequest>,
    ) -> Result<Response<pb::ProcessStoredImageResponse>, Status> {
        let r = request.into_inner();
        let req = request_options(r.options)?;
        self.processor.options(&req)?;
        let body = self.read_stored(&r.source_key).await?;
        let (metadata, placeholders, variants) = self.process_and_write(body, req).await?;
        Ok(Response::new(pb::ProcessStoredImageResponse {
            metadata: Some(metadata),
            placeholders: Some(placeholders),
            variants,
        }))
    }

    async fn get_image_info(
        &self,
        request: Request<Streaming<pb::GetImageInfoRequest>>,
    ) -> Result<Response<pb::GetImageInfoResponse>, Status> {
        let mut stream = request.into_inner();
        let mut body = Vec::new();
        while let Some(msg) = stream.message().await? {
            self.append(&mut body, &msg.chunk)?;
        }
        let info = self.processor.probe(Arc::new(body)).await?;
        Ok(Response::new(pb::GetImageInfoResponse {
            metadata: Some(metadata(&info)),
        }))
    }

    async fn regenerate_variants(
        &self,
        request: Request<pb::RegenerateVariantsRequest>,
    ) -> Result<Response<pb::RegenerateVariantsResponse>, Status> {
        let r = request.into_inner();
        let custom = match (r.preset.is_empty(), r.custom) {
            (true, Some(c)) => {
                let fit = match pb::FitMode::try_from(c.fit) {
                    Ok(pb::FitMode::Cover) => Fit::Cover,
                    Ok(pb::FitMode::Inside) | Ok(pb::FitMode::Unspecified) => Fit::Inside,
                    Err(_) => {
                        return Err(MediaError::InvalidArgument(format!(
                            "custom.fit {} is unknown: use FIT_MODE_INSIDE or FIT_MODE_COVER",
                            c.fit
                        ))
                        .into());
                    }
                };
                let q = |v: u32, d: u8| if v == 0 { d } else { v.min(255) as u8 };
                let name = if c.name.is_empty() {
                    format!("custom-{}x{}", c.width, c.height)
                } else {
                    c.name
                };
                let preset = Preset {
                    name,
                    width: c.width,
                    height: c.height,
                    fit,
                    jpeg_quality: q(c.jpeg_quality, 85),
                    webp_quality: q(c.webp_quality, 85),
                };
                preset.validate().map_err(MediaError::from)?;
                Some(preset)
            }
            (false, None) => None,
            _ => {
                return Err(MediaError::InvalidArgument(
                    "set exactly one of preset (a configured name) or custom".into(),
                )
                .into());
            }
        };
        let req = processor::Request {
            presets: if r.preset.is_empty() {
                vec![]
            } else {
                vec![r.preset]
            },
            custom,
            formats: output_formats(&r.formats)?,
            webp_lossless: false,
            keep_copyright: false,
        };
        self.processor.options(&req)?;
        let body = self.read_stored(&r.source_key).await?;
        let (_, _, variants) = self.process_and_write(body, req).await?;
        Ok(Response::new(pb::RegenerateVariantsResponse { variants }))
    }

    async fn list_presets(
        &self,
        _request: Request<pb::ListPresetsRequest>,
    ) -> Result<Response<pb::ListPresetsResponse>, Status> {
        Ok(Response::new(pb::ListPresetsResponse {
            presets: self.processor.presets().iter().map(preset_to_pb).collect(),
        }))
    }
}
