//! Hostile input through the whole mesh (gateway and gRPC APIs, in-process, embedded backends):
//! each case gets its status, leaves no catalog row and no object behind, and the test process's
//! resident set (the whole mesh) is measured while the cases run and must stay within a bound.
//!
//! What other suites already cover is not repeated here: plain text, HTML named `.jpg`, truncated
//! JPEGs, empty files, declared and streamed oversize uploads and bodies shorter than their
//! `Content-Length` (`gateway_upload.rs`); oversize, malformed and unknown-field JSON
//! (`gateway_api.rs`); traversal keys on every storage RPC (`services/storage/tests/api/objects.rs`);
//! tampered and foreign page tokens on the catalog's RPCs (`services/catalog/tests/api/suite.rs`).
// The figures (statuses, memory, latency) are the report: printed for `--no-capture` runs.
#![allow(clippy::print_stdout)]

mod common;
mod memory;

use std::io::Write;

use common::*;
use memory::{MIB, PeakProbe, mib};
use photos_gateway::auth::Role;
use photos_proto::cache_admin::v1 as cache_admin_pb;
use photos_proto::catalog::v1 as catalog_pb;
use photos_proto::media::v1 as media_pb;
use photos_proto::metrics::v1 as metrics_pb;
use photos_proto::storage::v1 as storage_pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// Growth of the mesh's resident set allowed while hostile input is handled. Generous on
/// purpose: it is about memory (a decoded bomb would need gigabytes), not time.
const MEMORY_BOUND: u64 = 256 * MIB;

// ---- hostile files ----

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// A well-formed 8-bit greyscale PNG whose IDAT really inflates to `(width + 1) * height`
/// bytes (every row filter 0, every pixel 0): a decompression bomb, not just a lying header.
fn png_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; width as usize + 1];
    for _ in 0..height {
        z.write_all(&row).unwrap();
    }
    let idat = z.finish().unwrap();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// The offset of the first `FF <marker>` segment in a JPEG.
fn find_marker(jpeg: &[u8], marker: u8) -> usize {
    jpeg.windows(2)
        .position(|w| w == [0xFF, marker])
        .unwrap_or_else(|| panic!("no FF{marker:02X} segment"))
}

/// `jpeg` with the given (marker, payload) segments inserted right after SOI.
fn with_segments(jpeg: &[u8], segments: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for (marker, payload) in segments {
        assert!(
            payload.len() + 2 <= 0xFFFF,
            "a segment holds at most 65533 bytes"
        );
        out.extend_from_slice(&[0xFF, *marker]);
        out.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// APP2 `ICC_PROFILE` segments carrying `total` bytes of profile, split as the spec says.
fn icc_segments(total: usize) -> Vec<(u8, Vec<u8>)> {
    const PER: usize = 65_519;
    let count = total.div_ceil(PER);
    (0..count)
        .map(|i| {
            let mut p = b"ICC_PROFILE\0".to_vec();
            p.extend_from_slice(&[(i + 1) as u8, count as u8]);
            p.extend(std::iter::repeat_n(0x5A, PER.min(total - i * PER)));
            (0xE2, p)
        })
        .collect()
}

/// `n` APP1 segments of about 64 KiB each, the first one an `Exif` block.
fn exif_segments(n: usize) -> Vec<(u8, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let mut p = if i == 0 {
                b"Exif\0\0MM\0\x2a\0\0\0\x08\0\0".to_vec()
            } else {
                b"http://ns.adobe.com/xap/1.0/\0".to_vec()
            };
            p.resize(65_000, b'A');
            (0xE1, p)
        })
        .collect()
}

/// A multipart form with one file part of the given name and declared type.
fn file_form(bytes: &[u8], filename: &str, content_type: &str) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

// ---- state ----

async fn object_keys(env: &Env, prefix: &str) -> Vec<String> {
    let mut storage = storage_pb::storage_service_client::StorageServiceClient::new(
        channel(env.mesh.addresses.storage).await,
    );
    let mut pages = storage
        .list_objects(storage_pb::ListObjectsRequest {
            prefix: prefix.into(),
            older_than_days: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut keys = Vec::new();
    while let Some(page) = pages.message().await.unwrap() {
        keys.extend(page.objects.into_iter().map(|o| o.key));
    }
    keys.sort();
    keys
}

/// Every object in every managed prefix.
async fn all_objects(env: &Env) -> Vec<String> {
    let mut keys = Vec::new();
    for prefix in ["originals/", "variants/", "tmp/"] {
        keys.extend(object_keys(env, prefix).await);
    }
    keys
}

async fn catalog_stats(env: &Env) -> catalog_pb::GetCatalogStatsResponse {
    let mut catalog = catalog_pb::catalog_service_client::CatalogServiceClient::new(
        channel(env.mesh.addresses.catalog).await,
    );
    catalog
        .get_catalog_stats(catalog_pb::GetCatalogStatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// Sends raw bytes to the gateway and returns the status line's code and the whole answer.
async fn raw_exchange(env: &Env, request: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(env.mesh.addresses.gateway)
        .await
        .unwrap();
    // The gateway may answer and close before reading everything.
    let _ = stream.write_all(request).await;
    let _ = stream.shutdown().await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let answer = String::from_utf8_lossy(&raw).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_images_are_refused_leave_nothing_and_cost_bounded_memory() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;

    // Warm up the whole upload path once (pools, decoder and encoder threads), in another
    // album, so the baseline includes what every upload needs anyway.
    let warm = env.create_album(&alice, false).await;
    let (status, _, photo) = env
        .upload(
            &warm,
            Some(&alice),
            &[],
            &form(&[], Some(&jpeg(1600, 1200, 1))),
        )
        .await;
    assert_eq!(status, 201, "{photo}");
    let before = all_objects(&env).await;

    let good = jpeg(640, 480, 2);
    let sof = find_marker(&good, 0xC0);
    let mut zero_width = good.clone();
    zero_width[sof + 7..sof + 9].copy_from_slice(&[0, 0]);
    let mut huge_jpeg = good.clone();
    huge_jpeg[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]); // 65500 x 65500
    let mut bad_huffman = good.clone();
    let dht = find_marker(&good, 0xC4);
    bad_huffman[dht + 5..dht + 21].fill(0xFF); // code counts summing far past 256
    let mut scrambled_png = png_bomb(64, 64);
    let idat = scrambled_png.windows(4).position(|w| w == b"IDAT").unwrap();
    scrambled_png[idat + 6..idat + 14].fill(0xA5); // the zlib stream, CRC left stale
    let bomb = png_bomb(10_000, 10_000);
    assert!(
        bomb.len() < 200 * 1024,
        "{} bytes inflate to 100 MB",
        bomb.len()
    );
    let mut html_after_soi = b"\xFF\xD8".to_vec();
    html_after_soi.extend_from_slice(b"<html><script>alert(1)</script></html>");
    let mut gif_junk = b"GIF89a\x10\x00\x10\x00".to_vec(); // 16x16, then no valid block
    gif_junk.extend_from_slice(&[0xFF; 64]);

    // (what, bytes, declared type, expected status, problem kind)
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "png decompression bomb (10000x10000, 100 MB inflated)",
            bomb,
            "image/png",
            413,
            "too_large",
        ),
        (
            "jpeg header claiming 65500x65500",
            huge_jpeg,
            "image/jpeg",
            413,
            "too_large",
        ),
        (
            "jpeg with a zero width",
            zero_width,
            "image/jpeg",
            422,
            "unprocessable",
        ),
        (
            "jpeg with a corrupt huffman table",
            bad_huffman,
            "image/jpeg",
            422,
            "unprocessable",
        ),
        (
            "png with a corrupt zlib stream",
            scrambled_png,
            "image/png",
            422,
            "unprocessable",
        ),
        (
            "jpeg magic, then html",
            html_after_soi,
            "image/jpeg",
            422,
            "unprocessable",
        ),
        (
            "gif magic, then junk",
            gif_junk,
            "image/gif",
            422,
            "unprocessable",
        ),
        (
            "icc profile of 2 MiB (limit 1 MiB)",
            with_segments(&good, &icc_segments(2 * 1024 * 1024)),
            "image/jpeg",
            413,
            "too_large",
        ),
    ];
    let probe = PeakProbe::start();
    for (what, bytes, content_type, expected, kind) in &cases {
        let (status, head, problem) = env
            .upload(
                &album,
                Some(&alice),
                &[],
                &file_form(bytes, "p.jpg", content_type),
            )
            .await;
        println!(
            "{what}: {} bytes -> {status} {}",
            bytes.len(),
            problem["detail"]
        );
        assert_eq!(status, *expected, "{what}: {problem}");
        assert_eq!(problem["kind"], *kind, "{what}: {problem}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        assert!(
            !problem["detail"].as_str().unwrap_or_default().is_empty(),
            "{what}: an actionable message"
        );
    }
    let growth = probe.growth();
    println!(
        "hostile images: {} cases, resident set {:.1} MiB, peak growth {:.1} MiB",
        cases.len(),
        mib(probe.baseline()),
        mib(growth)
    );
    assert!(growth < MEMORY_BOUND, "peak growth {:.1} MiB", mib(growth));

    // Nothing of any of them was kept: no row, no original, no variant, no temporary object.
    let stats = catalog_stats(&env).await;
    assert_eq!(stats.photo_count, 1, "only the warm-up photo: {stats:?}");
    assert_eq!(all_objects(&env).await, before);
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyglots_and_huge_metadata_are_stored_as_images_only() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let script = b"<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"alert(1)\"><script>alert(2)</script></svg>";

    // A real JPEG that is also markup: a comment segment with a script, and an SVG after EOI.
    let mut polyglot = with_segments(&jpeg(400, 300, 3), &[(0xFE, script.to_vec())]);
    polyglot.extend_from_slice(script);
    // 100 APP1 segments (6.5 MB of EXIF/XMP) in front of a small image.
    let metadata = with_segments(&jpeg(400, 300, 4), &exif_segments(100));
    assert!(metadata.len() > 6_000_000);

    let probe = PeakProbe::start();
    for (what, bytes, declared) in [
        (
            "jpeg/svg polyglot declared as svg",
            polyglot,
            "image/svg+xml",
        ),
        ("6.5 MB of EXIF and XMP", metadata, "image/jpeg"),
    ] {
        let (status, _, photo) = env
            .upload(
                &album,
                Some(&alice),
                &[],
                &file_form(&bytes, "p.svg", declared),
            )
            .await;
        assert_eq!(status, 201, "{what}: {photo}");
        // Only re-encoded variants are ever linked: none carries the markup or the metadata.
        let sources = photo["sources"].as_array().unwrap();
        assert!(!sources.is_empty(), "{what}");
        let mut storage = storage_pb::storage_service_client::StorageServiceClient::new(
            channel(env.mesh.addresses.storage).await,
        );
        for s in sources {
            let key = s["url"]
                .as_str()
                .unwrap()
                .split_once("/variants/")
                .map(|(_, rest)| format!("variants/{}", rest.split('?').next().unwrap()))
                .unwrap();
            let mut stream = storage
                .get_object(storage_pb::GetObjectRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let mut variant = Vec::new();
            let mut content_type = String::new();
            while let Some(m) = stream.message().await.unwrap() {
                if let Some(storage_pb::get_object_response::Part::Object(info)) = &m.part {
                    content_type = info.content_type.clone();
                }
                if let Some(storage_pb::get_object_response::Part::Chunk(c)) = m.part {
                    variant.extend_from_slice(&c);
                }
            }
            assert!(
                content_type == "image/jpeg" || content_type == "image/webp",
                "{key}: {content_type}"
            );
            assert!(
                variant.len() < 1_000_000,
                "{what}: {key} is {} bytes",
                variant.len()
            );
            assert!(
                !variant
                    .windows(7)
                    .any(|w| w.eq_ignore_ascii_case(b"<script")),
                "{what}: {key} carries the script"
            );
        }
        // The original is kept as uploaded, but never as a type a browser would run.
        let originals = object_keys(&env, &format!("originals/{album}/")).await;
        for key in &originals {
            let head = storage
                .head_object(storage_pb::HeadObjectRequest { key: key.clone() })
                .await
                .unwrap()
                .into_inner();
            let ct = head.object.unwrap().content_type;
            assert!(
                !ct.contains("svg") && !ct.contains("html") && !ct.contains("xml"),
                "{what}: original {key} is stored as {ct}"
            );
        }
    }
    let growth = probe.growth();
    println!(
        "polyglot + 6.5 MB metadata: peak growth {:.1} MiB",
        mib(growth)
    );
    assert!(growth < MEMORY_BOUND, "peak growth {:.1} MiB", mib(growth));
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_and_oversize_bodies_are_refused_and_store_nothing() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let path = format!("/api/v1/albums/{album}/photos");
    let image = jpeg(320, 240, 5);
    let form = form(&[], Some(&image));
    let head = |extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nAuthorization: {alice}\r\n\
             Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{extra}\r\n"
        )
    };
    let with_body = |head: String, body: &[u8]| {
        let mut r = head.into_bytes();
        r.extend_from_slice(body);
        r
    };

    let probe = PeakProbe::start();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "content-length of a petabyte, tiny body",
            with_body(head("Content-Length: 1000000000000000\r\n"), &form),
            413,
        ),
        (
            "content-length that is not a number",
            with_body(head("Content-Length: 12abc\r\n"), &form),
            400,
        ),
        (
            "two different content-lengths",
            with_body(
                head(&format!(
                    "Content-Length: {}\r\nContent-Length: 10\r\n",
                    form.len()
                )),
                &form,
            ),
            400,
        ),
        (
            "content-length shorter than the body (the form is cut)",
            with_body(
                head(&format!("Content-Length: {}\r\n", form.len() / 2)),
                &form,
            ),
            400,
        ),
        (
            "content-length and chunked at once",
            with_body(
                head(&format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    form.len()
                )),
                &form,
            ),
            400,
        ),
    ];
    for (what, request, expected) in cases {
        let (status, answer) = raw_exchange(&env, &request).await;
        println!("{what} -> {status}");
        assert_eq!(status, expected, "{what}: {answer}");
    }

    // 80 MiB chunked (no length declared) against the 64 MiB limit: refused while streaming,
    // after most of it went to storage as a multipart upload, which is then aborted.
    let big = 80 * MIB as usize;
    // The answer is read while the body is still being sent: the gateway answers 413 and closes,
    // and writes after that would reset the connection and discard an unread answer.
    let (mut read_half, mut stream) = tokio::net::TcpStream::connect(env.mesh.addresses.gateway)
        .await
        .unwrap()
        .into_split();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let answered = answered.clone();
        tokio::spawn(async move {
            let mut raw = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        raw.extend_from_slice(&buf[..n]);
                        answered.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            raw
        })
    };
    stream
        .write_all(head("Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    let opening = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"p.jpg\"\r\n\
         Content-Type: image/jpeg\r\n\r\n"
    );
    let send_chunk = |data: Vec<u8>| {
        let mut c = format!("{:x}\r\n", data.len()).into_bytes();
        c.extend_from_slice(&data);
        c.extend_from_slice(b"\r\n");
        c
    };
    let mut sent = 0usize;
    let stopped = |answered: &std::sync::atomic::AtomicBool| {
        answered.load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut cut_off = stream
        .write_all(&send_chunk(opening.into_bytes()))
        .await
        .is_err();
    let piece = vec![0xABu8; MIB as usize];
    while !cut_off && !stopped(&answered) && sent < big {
        cut_off = stream.write_all(&send_chunk(piece.clone())).await.is_err();
        sent += piece.len();
    }
    if !cut_off && !stopped(&answered) {
        let _ = stream
            .write_all(&send_chunk(format!("\r\n--{BOUNDARY}--\r\n").into_bytes()))
            .await;
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let raw = reader.await.unwrap();
    let answer = String::from_utf8_lossy(&raw);
    println!(
        "80 MiB chunked upload: {} MiB sent before the answer",
        sent / MIB as usize
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let growth = probe.growth();
    println!(
        "lying and oversize bodies: peak growth {:.1} MiB",
        mib(growth)
    );
    assert!(growth < MEMORY_BOUND, "peak growth {:.1} MiB", mib(growth));
    assert_eq!(catalog_stats(&env).await.photo_count, 0);
    assert_eq!(all_objects(&env).await, Vec::<String>::new());
    // The gateway still takes a good upload on a fresh connection.
    let (status, _, photo) = env.upload(&album, Some(&alice), &[], &form).await;
    assert_eq!(status, 201, "{photo}");
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_limit_grpc_messages_are_refused_by_every_service_and_change_nothing() {
    let env = Env::start().await;
    let a = env.mesh.addresses.clone();
    // Every server's limit is server.max_message_bytes, 8 MiB by default.
    let huge = "x".repeat(9 * MIB as usize);
    let probe = PeakProbe::start();
    let mut results: Vec<(&str, tonic::Status)> = Vec::new();

    let mut catalog =
        catalog_pb::catalog_service_client::CatalogServiceClient::new(channel(a.catalog).await);
    results.push((
        "catalog CreateAlbum",
        catalog
            .create_album(catalog_pb::CreateAlbumRequest {
                title: huge.clone(),
                owner_id: "alice".into(),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    let mut media = media_pb::media_service_client::MediaServiceClient::new(channel(a.media).await);
    let parts = vec![
        media_pb::ProcessImageRequest {
            part: Some(media_pb::process_image_request::Part::Header(
                media_pb::ProcessImageHeader::default(),
            )),
        },
        media_pb::ProcessImageRequest {
            part: Some(media_pb::process_image_request::Part::Chunk(
                huge.clone().into_bytes(),
            )),
        },
    ];
    results.push((
        "media ProcessImage",
        media
            .process_image(tokio_stream_iter(parts))
            .await
            .unwrap_err(),
    ));
    let mut storage =
        storage_pb::storage_service_client::StorageServiceClient::new(channel(a.storage).await);
    let parts = vec![
        storage_pb::PutObjectRequest {
            part: Some(storage_pb::put_object_request::Part::Header(
                storage_pb::PutObjectHeader {
                    key: "tmp/over-limit".into(),
                    content_type: "image/jpeg".into(),
                    ..Default::default()
                },
            )),
        },
        storage_pb::PutObjectRequest {
            part: Some(storage_pb::put_object_request::Part::Chunk(
                huge.clone().into_bytes(),
            )),
        },
        storage_pb::PutObjectRequest {
            part: Some(storage_pb::put_object_request::Part::Finish(
                storage_pb::PutObjectFinish::default(),
            )),
        },
    ];
    results.push((
        "storage PutObject",
        storage
            .put_object(tokio_stream_iter(parts))
            .await
            .unwrap_err(),
    ));
    let mut cache_admin = cache_admin_pb::cache_admin_service_client::CacheAdminServiceClient::new(
        channel(a.cache_admin).await,
    );
    results.push((
        "cache-admin Invalidate",
        cache_admin
            .invalidate(cache_admin_pb::InvalidateRequest {
                keys: vec![huge.clone()],
                ..Default::default()
            })
            .await
            .unwrap_err(),
    ));
    let mut metrics =
        metrics_pb::metrics_service_client::MetricsServiceClient::new(channel(a.metrics).await);
    results.push((
        "metrics ReportMetrics",
        metrics
            .report_metrics(tokio_stream_iter(vec![metrics_pb::ReportMetricsRequest {
                service: "catalog".into(),
                instance: huge.clone(),
                ..Default::default()
            }]))
            .await
            .unwrap_err(),
    ));
    // tonic refuses an over-limit message while decoding it, before any handler sees it (in a
    // client stream the handler meets the error while reading); every service answers
    // RESOURCE_EXHAUSTED, the house table's code for "too large", with the limit in the message.
    let expected = [
        ("catalog CreateAlbum", Code::ResourceExhausted),
        ("media ProcessImage", Code::ResourceExhausted),
        ("storage PutObject", Code::ResourceExhausted),
        ("cache-admin Invalidate", Code::ResourceExhausted),
        ("metrics ReportMetrics", Code::ResourceExhausted),
    ];
    for ((rpc, status), (named, code)) in results.iter().zip(expected) {
        println!(
            "{rpc}: 9 MiB message -> {:?} {}",
            status.code(),
            status.message()
        );
        assert_eq!(*rpc, named);
        assert_eq!(status.code(), code, "{rpc}: {status:?}");
        assert!(
            status.message().contains("the limit is: 8388608 bytes"),
            "{rpc}: {}",
            status.message()
        );
    }
    let growth = probe.growth();
    println!(
        "over-limit gRPC messages: peak growth {:.1} MiB",
        mib(growth)
    );
    assert!(growth < MEMORY_BOUND, "peak growth {:.1} MiB", mib(growth));

    // Nothing was written, and every server still answers.
    let stats = catalog_stats(&env).await;
    assert_eq!((stats.album_count, stats.photo_count), (0, 0), "{stats:?}");
    assert_eq!(all_objects(&env).await, Vec::<String>::new());
    for (name, addr) in a.grpc() {
        wait_serving(addr).await;
        println!("{name} serving after the oversize message");
    }
    env.mesh.shutdown().await.unwrap();
}

fn tokio_stream_iter<T: Send + 'static>(
    items: Vec<T>,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    tokio_stream::iter(items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_page_tokens_are_400_on_every_gateway_listing() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let mut albums = Vec::new();
    for _ in 0..3 {
        albums.push(env.create_album(&alice, true).await);
    }
    let (status, _, page) = env
        .call("GET", "/api/v1/albums?page_size=1", None, None)
        .await;
    assert_eq!(status, 200, "{page}");
    let token = page["next_page_token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    // The genuine token works where it was issued.
    let (status, _, next) = env
        .call(
            "GET",
            &format!("/api/v1/albums?page_size=1&page_token={token}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{next}");
    assert_ne!(next["albums"][0]["id"], page["albums"][0]["id"]);

    let (payload, tag) = token.split_once('.').unwrap();
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    use base64::Engine;
    let forged = format!(
        "{}.{tag}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("0|0|1")
    );
    let long = "A".repeat(10_000);
    let cases: Vec<(&str, String)> = vec![
        (
            "one character of the tag changed",
            format!("/api/v1/albums?page_token={flipped}"),
        ),
        (
            "payload replaced, tag kept",
            format!("/api/v1/albums?page_token={forged}"),
        ),
        (
            "payload without its tag",
            format!("/api/v1/albums?page_token={payload}"),
        ),
        (
            "not base64",
            "/api/v1/albums?page_token=%21%21.%3F%3F".into(),
        ),
        (
            "NUL and invalid UTF-8",
            "/api/v1/albums?page_token=%00%FF.%FE".into(),
        ),
        (
            "10 000 characters",
            format!("/api/v1/albums?page_token={long}"),
        ),
        (
            "a list token on the published filter's twin: mine",
            format!("/api/v1/albums?mine=true&page_token={token}"),
        ),
        (
            "a list token on an album's photos",
            format!("/api/v1/albums/{}/photos?page_token={token}", albums[0]),
        ),
        (
            "a list token on recent photos",
            format!("/api/v1/photos/recent?page_token={token}"),
        ),
    ];
    for (what, path) in cases {
        let (status, head, problem) = env.call("GET", &path, Some(&alice), None).await;
        println!("{what} -> {status} {}", problem["detail"]);
        assert_eq!(status, 400, "{what}: {problem}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("page_token"),
            "{what}: the message names the parameter: {problem}"
        );
    }
    env.mesh.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_keys_are_refused_by_every_mesh_api_that_takes_a_key() {
    let env = Env::start().await;
    let alice = env.token("alice", Role::Owner);
    let album = env.create_album(&alice, false).await;
    let a = env.mesh.addresses.clone();
    let mut media = media_pb::media_service_client::MediaServiceClient::new(channel(a.media).await);
    let mut catalog =
        catalog_pb::catalog_service_client::CatalogServiceClient::new(channel(a.catalog).await);
    let bad_keys = [
        "../originals/a.jpg",
        "originals/../../etc/passwd",
        "/originals/a.jpg",
        "originals/a\\..\\..\\b",
        "originals/./a.jpg",
        "originals//a.jpg",
        "originals/a\u{0}.jpg",
    ];
    for key in bad_keys {
        let e = media
            .process_stored_image(media_pb::ProcessStoredImageRequest {
                source_key: key.into(),
                options: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "media ProcessStoredImage {key:?}: {e:?}"
        );
        let e = media
            .regenerate_variants(media_pb::RegenerateVariantsRequest {
                source_key: key.into(),
                preset: "small".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "media RegenerateVariants {key:?}: {e:?}"
        );
        let e = catalog
            .create_photo(catalog_pb::CreatePhotoRequest {
                album_id: album.clone(),
                original_key: key.into(),
                content_sha256: "ab".repeat(32),
                bytes: 10,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(
            e.code(),
            Code::InvalidArgument,
            "catalog CreatePhoto {key:?}: {e:?}"
        );
        assert!(e.message().contains("original_key"), "{}", e.message());
    }
    // Ids in gateway paths never become keys: anything but a number is an unknown album/photo.
    for path in [
        "/api/v1/albums/..%2F..%2Fetc/photos",
        "/api/v1/albums/%2E%2E/photos",
        "/api/v1/albums/1%2F..%2F2/photos",
    ] {
        let (status, _, problem) = env
            .upload_to(path, &alice, &form(&[], Some(&jpeg(64, 48, 6))))
            .await;
        assert_eq!(status, 404, "{path}: {problem}");
    }
    for path in ["/api/v1/photos/..%2F..%2Fsecret", "/api/v1/albums/..%2F1"] {
        let (status, _, problem) = env.call("GET", path, Some(&alice), None).await;
        assert_eq!(status, 404, "{path}: {problem}");
    }
    assert_eq!(catalog_stats(&env).await.photo_count, 0);
    assert_eq!(all_objects(&env).await, Vec::<String>::new());
    env.mesh.shutdown().await.unwrap();
}

trait UploadTo {
    async fn upload_to(
        &self,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> (u16, String, serde_json::Value);
}

impl UploadTo for Env {
    async fn upload_to(
        &self,
        path: &str,
        token: &str,
        body: &[u8],
    ) -> (u16, String, serde_json::Value) {
        let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
        let (status, head, body) = photos_testkit::http::request_bytes(
            self.mesh.addresses.gateway,
            "POST",
            path,
            &[("Content-Type", &content_type), ("Authorization", token)],
            Some(body),
        )
        .await;
        (
            status,
            head,
            serde_json::from_slice(&body).unwrap_or_default(),
        )
    }
}
