use photos_media::MediaConfig;
use photos_proto::media::v1 as pb;
use photos_proto::media::v1::media_service_client::MediaServiceClient;
use photos_proto::storage::v1 as spb;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_runtime::{Secret, UpstreamConfig};
use photos_storage::StorageConfig;
use photos_testkit::s3::{self, TestS3};
use tokio::sync::oneshot;
use tonic::transport::Channel;

pub const MIB: usize = 1024 * 1024;

/// Media + storage + an S3 server, all real, on loopback ports chosen by the OS.
pub struct TestApp {
    pub media: MediaServiceClient<Channel>,
    pub storage: StorageServiceClient<Channel>,
    /// Media's admin port (`/metrics`).
    pub media_admin: std::net::SocketAddr,
    stops: Vec<oneshot::Sender<()>>,
    _s3: TestS3,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

async fn connect(addr: std::net::SocketAddr) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut MediaConfig)) -> TestApp {
    use photos_runtime::config::Validate;
    let s3 = TestS3::start().await.expect("s3");
    let mut sc = StorageConfig::default();
    sc.server.grpc_port = 0;
    sc.server.admin_port = 0;
    sc.server.drain_grace_ms = 100;
    sc.s3.endpoint = s3.endpoint();
    sc.s3.bucket = s3::BUCKET.to_owned();
    sc.s3.region = s3::REGION.to_owned();
    sc.s3.access_key = Secret::new(s3::ACCESS_KEY);
    sc.s3.secret_key = Secret::new(s3::SECRET_KEY);
    sc.s3.force_path_style = true;
    sc.validate().expect("storage config");
    let storage = photos_storage::build(sc).await.expect("storage build");
    let storage_addr = storage.grpc_addr();

    let mut mc = MediaConfig::default();
    mc.server.grpc_port = 0;
    mc.server.admin_port = 0;
    mc.server.drain_grace_ms = 100;
    mc.storage = UpstreamConfig::new(format!("http://{storage_addr}"));
    tweak(&mut mc);
    mc.validate().expect("media config");
    let media = photos_media::build(mc).await.expect("media build");
    let media_addr = media.grpc_addr();
    let media_admin = media.admin_addr();

    let (s1, r1) = oneshot::channel::<()>();
    let (s2, r2) = oneshot::channel::<()>();
    tokio::spawn(async move {
        storage
            .run_until_stopped(async {
                let _ = r1.await;
            })
            .await
            .expect("storage server");
    });
    tokio::spawn(async move {
        media
            .run_until_stopped(async {
                let _ = r2.await;
            })
            .await
            .expect("media server");
    });
    TestApp {
        media: MediaServiceClient::new(connect(media_addr).await)
            .max_decoding_message_size(16 * MIB)
            .max_encoding_message_size(16 * MIB),
        storage: StorageServiceClient::new(connect(storage_addr).await)
            .max_decoding_message_size(16 * MIB)
            .max_encoding_message_size(16 * MIB),
        media_admin,
        stops: vec![s1, s2],
        _s3: s3,
    }
}

pub fn upload(
    options: pb::ProcessOptions,
    expected: u64,
    bytes: &[u8],
    chunk: usize,
) -> impl futures::Stream<Item = pb::ProcessImageRequest> + Send + 'static {
    let mut msgs = vec![pb::ProcessImageRequest {
        part: Some(pb::process_image_request::Part::Header(
            pb::ProcessImageHeader {
                options: Some(options),
                expected_bytes: expected,
            },
        )),
    }];
    msgs.extend(bytes.chunks(chunk).map(|c| pb::ProcessImageRequest {
        part: Some(pb::process_image_request::Part::Chunk(c.to_vec())),
    }));
    futures::stream::iter(msgs)
}

impl TestApp {
    pub async fn process(
        &mut self,
        bytes: &[u8],
    ) -> Result<pb::ProcessImageResponse, tonic::Status> {
        let s = upload(
            pb::ProcessOptions::default(),
            bytes.len() as u64,
            bytes,
            MIB,
        );
        self.media.process_image(s).await.map(|r| r.into_inner())
    }

    pub async fn get(&mut self, key: &str) -> Result<Vec<u8>, tonic::Status> {
        use futures::TryStreamExt;
        let mut stream = self
            .storage
            .get_object(spb::GetObjectRequest {
                key: key.to_owned(),
                range: None,
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        while let Some(m) = stream.try_next().await? {
            if let Some(spb::get_object_response::Part::Chunk(c)) = m.part {
                out.extend_from_slice(&c);
            }
        }
        Ok(out)
    }

    pub async fn put(&mut self, key: &str, bytes: &[u8]) {
        let mut msgs = vec![spb::PutObjectRequest {
            part: Some(spb::put_object_request::Part::Header(
                spb::PutObjectHeader {
                    key: key.to_owned(),
                    content_type: "application/octet-stream".into(),
                    content_addressed: false,
                    expected_size: bytes.len() as u64,
                    sha256: String::new(),
                },
            )),
        }];
        msgs.extend(bytes.chunks(MIB).map(|c| spb::PutObjectRequest {
            part: Some(spb::put_object_request::Part::Chunk(c.to_vec())),
        }));
        self.storage
            .put_object(futures::stream::iter(msgs))
            .await
            .expect("put original");
    }
}

/// A test photo: gradients plus deterministic noise, encoded by libjpeg-turbo.
pub fn photo(w: u32, h: u32, quality: u8, noise: u32) -> Vec<u8> {
    let mut pixels = Vec::with_capacity((w * h * 3) as usize);
    let mut x: u32 = 0x9E37_79B9;
    for py in 0..h {
        for px in 0..w {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let n = if noise == 0 { 0 } else { x % noise };
            pixels.push(((px * 200 / w) + n).min(255) as u8);
            pixels.push(((py * 200 / h) + n).min(255) as u8);
            pixels.push((((px + py) * 100 / (w + h)) + n).min(255) as u8);
        }
    }
    photos_imaging::encode_jpeg(
        &photos_imaging::Raster {
            width: w,
            height: h,
            alpha: false,
            pixels,
        },
        quality,
    )
    .unwrap()
}

/// Inserts an APP1 EXIF block with the given fields.
pub fn with_exif(jpeg: &[u8], fields: &[exif::Field]) -> Vec<u8> {
    let mut w = exif::experimental::Writer::new();
    for f in fields {
        w.push_field(f);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    w.write(&mut buf, false).unwrap();
    photos_imaging::insert_exif(jpeg, &buf.into_inner())
}

pub fn field(tag: exif::Tag, value: exif::Value) -> exif::Field {
    exif::Field {
        tag,
        ifd_num: exif::In::PRIMARY,
        value,
    }
}
