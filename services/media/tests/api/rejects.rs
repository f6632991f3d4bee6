use photos_proto::media::v1 as pb;
use tonic::Code;

use crate::helpers::*;

fn bomb() -> Vec<u8> {
    // PNG signature + IHDR claiming 65535x65535 RGB; decoding would need 12 GiB.
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&65_535u32.to_be_bytes());
    ihdr.extend_from_slice(&65_535u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&[0, 0, 0, 0]); // CRC is never reached: the size check comes first
    out.extend_from_slice(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]);
    out
}

#[tokio::test]
async fn bad_bodies_get_invalid_argument_or_resource_exhausted() {
    let mut app = spawn_app().await;
    let cases: Vec<(&str, Vec<u8>, Code, &str)> = vec![
        ("empty", vec![], Code::InvalidArgument, "empty body"),
        (
            "svg named .jpg",
            br#"<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>"#.to_vec(),
            Code::InvalidArgument,
            "svg markup",
        ),
        (
            "html",
            b"<!doctype html><html></html>".to_vec(),
            Code::InvalidArgument,
            "html markup",
        ),
        (
            "truncated jpeg",
            photo(400, 300, 90, 8)[..1500].to_vec(),
            Code::InvalidArgument,
            "jpeg",
        ),
        ("bomb", bomb(), Code::ResourceExhausted, "65535x65535"),
    ];
    for (name, body, code, needle) in cases {
        let status = app.process(&body).await.expect_err(name);
        assert_eq!(status.code(), code, "{name}: {status:?}");
        assert!(
            status.message().contains(needle),
            "{name}: {}",
            status.message()
        );
    }
    // Nothing was written for any of them.
    use futures::TryStreamExt;
    let pages: Vec<_> = app
        .storage
        .list_objects(photos_proto::storage::v1::ListObjectsRequest {
            prefix: "variants/".into(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .try_collect()
        .await
        .expect("list pages");
    let n: usize = pages.iter().map(|p| p.objects.len()).sum();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn byte_limit_is_enforced_while_streaming_and_from_the_header() {
    let mut app = spawn_with(|c| c.pipeline.max_bytes = 64 * 1024).await;
    let body = photo(1200, 900, 100, 60);
    assert!(body.len() > 64 * 1024);
    // Declared size above the limit: rejected before any chunk is read.
    let declared = app
        .media
        .process_image(upload(
            pb::ProcessOptions::default(),
            body.len() as u64,
            &body,
            16 * 1024,
        ))
        .await
        .unwrap_err();
    assert_eq!(declared.code(), Code::ResourceExhausted);
    // Size not declared: rejected once the running total passes the limit.
    let streamed = app
        .media
        .process_image(upload(pb::ProcessOptions::default(), 0, &body, 16 * 1024))
        .await
        .unwrap_err();
    assert_eq!(streamed.code(), Code::ResourceExhausted);
    assert!(
        streamed
            .message()
            .contains("above the limit of 65536 bytes"),
        "{}",
        streamed.message()
    );
}

#[tokio::test]
async fn malformed_requests_are_invalid_arguments() {
    let mut app = spawn_app().await;
    let body = photo(200, 100, 80, 4);
    let no_header = futures::stream::iter(vec![pb::ProcessImageRequest {
        part: Some(pb::process_image_request::Part::Chunk(body.clone())),
    }]);
    let e = app.media.process_image(no_header).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("first message must be the header"));

    let unknown = pb::ProcessOptions {
        presets: vec!["huge".into()],
        ..Default::default()
    };
    let e = app
        .media
        .process_image(upload(unknown, 0, &body, MIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("unknown preset \"huge\""),
        "{}",
        e.message()
    );

    let png_out = pb::ProcessOptions {
        formats: vec![pb::ImageFormat::Png as i32],
        ..Default::default()
    };
    let e = app
        .media
        .process_image(upload(png_out, 0, &body, MIB))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let e = app
        .media
        .regenerate_variants(pb::RegenerateVariantsRequest {
            source_key: "originals/a.jpg".into(),
            preset: "small".into(),
            custom: Some(pb::Preset::default()),
            formats: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}
