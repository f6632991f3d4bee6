use std::io::Cursor;

use photos_proto::media::v1 as pb;

use crate::helpers::*;

#[tokio::test]
async fn process_image_writes_every_variant_through_storage() {
    let mut app = spawn_app().await;
    let r = |n| exif::Rational { num: n, denom: 1 };
    let src = with_exif(
        &photo(1600, 1200, 90, 12),
        &[
            field(exif::Tag::Orientation, exif::Value::Short(vec![6])),
            field(
                exif::Tag::GPSLatitudeRef,
                exif::Value::Ascii(vec![b"N".to_vec()]),
            ),
            field(
                exif::Tag::GPSLatitude,
                exif::Value::Rational(vec![r(48), r(51), r(29)]),
            ),
            field(
                exif::Tag::DateTimeOriginal,
                exif::Value::Ascii(vec![b"2021:06:15 14:30:05".to_vec()]),
            ),
        ],
    );
    let resp = app.process(&src).await.expect("process");
    let md = resp.metadata.clone().expect("metadata");
    assert_eq!(
        (md.width, md.height),
        (1200, 1600),
        "orientation 6 swaps the sides"
    );
    assert_eq!(md.orientation, 6);
    assert_eq!(md.format, pb::ImageFormat::Jpeg as i32);
    assert_eq!(md.bytes, src.len() as u64);
    assert_eq!(md.content_sha256, photos_imaging::content_sha256(&src));
    assert_eq!(md.taken_time.map(|t| t.seconds), Some(1_623_767_405));
    let ph = resp.placeholders.clone().expect("placeholders");
    assert!(ph.dominant_color.starts_with('#') && ph.dominant_color.len() == 7);
    assert!(
        ph.blur_data_uri.starts_with("data:image/webp;base64,") && ph.blur_data_uri.len() <= 1024
    );
    assert!(!ph.blurhash.is_empty() && !ph.thumbhash.is_empty());

    assert_eq!(resp.variants.len(), 10);
    let expected = [
        ("thumbnail", 400, 400),
        ("small", 360, 480),
        ("medium", 576, 768),
        ("large", 810, 1080),
        ("xlarge", 1080, 1440),
    ];
    for v in &resp.variants {
        let (_, w, h) = expected
            .iter()
            .find(|(n, _, _)| *n == v.preset)
            .expect("known preset");
        assert_eq!((v.width, v.height), (*w, *h), "{}", v.preset);
        let stored = app.get(&v.object_key).await.expect("variant is in storage");
        assert_eq!(stored.len() as u64, v.bytes, "{}", v.object_key);
        let img = image::load_from_memory(&stored).unwrap();
        assert_eq!((img.width(), img.height()), (*w, *h));
        assert!(
            exif::Reader::new()
                .read_from_container(&mut Cursor::new(&stored))
                .is_err(),
            "{} carries no exif",
            v.object_key
        );
        assert!(v.object_key.starts_with("variants/") && v.object_key.contains(&md.content_sha256));
    }

    // Reprocessing is idempotent: same keys, same sizes.
    let again = app.process(&src).await.expect("reprocess");
    let keys = |r: &pb::ProcessImageResponse| {
        r.variants
            .iter()
            .map(|v| (v.object_key.clone(), v.bytes))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&resp), keys(&again));
}

#[tokio::test]
async fn originals_above_the_4_mib_grpc_default_stream_through() {
    let mut app = spawn_app().await;
    let src = photo(3000, 2000, 100, 90);
    assert!(src.len() > 5 * MIB, "fixture is {} bytes", src.len());
    let opts = pb::ProcessOptions {
        presets: vec!["small".into()],
        formats: vec![pb::ImageFormat::Webp as i32],
        ..Default::default()
    };
    let resp = app
        .media
        .process_image(upload(opts, src.len() as u64, &src, 2 * MIB))
        .await
        .expect("process")
        .into_inner();
    assert_eq!(resp.variants.len(), 1);
    assert_eq!(
        (resp.variants[0].width, resp.variants[0].height),
        (640, 427)
    );
    assert_eq!(resp.variants[0].format, pb::ImageFormat::Webp as i32);
}

#[tokio::test]
async fn stored_originals_are_processed_and_regenerated() {
    let mut app = spawn_app().await;
    let src = photo(1200, 800, 90, 8);
    app.put("originals/u1/p1.jpg", &src).await;
    let resp = app
        .media
        .process_stored_image(pb::ProcessStoredImageRequest {
            source_key: "originals/u1/p1.jpg".into(),
            options: Some(pb::ProcessOptions {
                presets: vec!["thumbnail".into(), "medium".into()],
                formats: vec![pb::ImageFormat::Jpeg as i32],
                ..Default::default()
            }),
        })
        .await
        .expect("process stored")
        .into_inner();
    assert_eq!(resp.variants.len(), 2);
    assert_eq!(resp.metadata.unwrap().width, 1200);
    for v in &resp.variants {
        assert_eq!(app.get(&v.object_key).await.unwrap().len() as u64, v.bytes);
    }

    let regen = app
        .media
        .regenerate_variants(pb::RegenerateVariantsRequest {
            source_key: "originals/u1/p1.jpg".into(),
            preset: String::new(),
            custom: Some(pb::Preset {
                name: "square".into(),
                width: 300,
                height: 300,
                fit: pb::FitMode::Cover as i32,
                jpeg_quality: 70,
                webp_quality: 0,
            }),
            formats: vec![],
        })
        .await
        .expect("regenerate")
        .into_inner();
    assert_eq!(regen.variants.len(), 2);
    for v in &regen.variants {
        assert_eq!((v.width, v.height), (300, 300));
        assert!(v.object_key.contains("square-300x300-cover"));
        let stored = app.get(&v.object_key).await.unwrap();
        assert_eq!(stored.len() as u64, v.bytes);
    }

    let by_name = app
        .media
        .regenerate_variants(pb::RegenerateVariantsRequest {
            source_key: "originals/u1/p1.jpg".into(),
            preset: "large".into(),
            custom: None,
            formats: vec![pb::ImageFormat::Webp as i32],
        })
        .await
        .expect("regenerate preset")
        .into_inner();
    assert_eq!(by_name.variants.len(), 1);
    assert_eq!(
        (by_name.variants[0].width, by_name.variants[0].height),
        (1200, 800)
    );

    let missing = app
        .media
        .process_stored_image(pb::ProcessStoredImageRequest {
            source_key: "originals/u1/nope.jpg".into(),
            options: None,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
}

#[tokio::test]
async fn image_info_and_presets() {
    let mut app = spawn_app().await;
    let src = photo(640, 480, 85, 4);
    let chunks: Vec<pb::GetImageInfoRequest> = src
        .chunks(1000)
        .map(|c| pb::GetImageInfoRequest { chunk: c.to_vec() })
        .collect();
    let info = app
        .media
        .get_image_info(futures::stream::iter(chunks))
        .await
        .expect("info")
        .into_inner()
        .metadata
        .unwrap();
    assert_eq!((info.width, info.height, info.orientation), (640, 480, 1));
    assert_eq!(info.format, pb::ImageFormat::Jpeg as i32);
    assert!(!info.has_alpha);

    let presets = app
        .media
        .list_presets(pb::ListPresetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .presets;
    let names: Vec<_> = presets.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["thumbnail", "small", "medium", "large", "xlarge"]);
    assert_eq!(presets[0].fit, pb::FitMode::Cover as i32);
    assert_eq!((presets[4].width, presets[4].height), (2560, 1440));
}

#[tokio::test]
async fn the_pipeline_counts_photos_time_and_bytes_on_metrics() {
    let mut app = spawn_app().await;
    app.process(&photo(800, 600, 90, 3)).await.expect("process");
    app.process(b"not an image at all").await.unwrap_err();
    let (status, metrics) = photos_testkit::http::get(app.media_admin, "/metrics").await;
    assert_eq!(status, 200);
    let value = |family: &str, label: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(family) && l.contains(label))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {family} {label} in\n{metrics}"))
    };
    assert_eq!(value("photos_media_photos_total{", "outcome=\"ok\""), 1.0);
    assert_eq!(
        value("photos_media_photos_total{", "outcome=\"error\""),
        1.0
    );
    assert_eq!(
        value("photos_media_process_duration_seconds_count{", ""),
        2.0
    );
    assert!(value("photos_media_output_bytes_total{", "format=\"webp\"") > 0.0);
    assert!(value("photos_media_output_bytes_total{", "format=\"jpeg\"") > 0.0);
    assert_eq!(value("photos_media_decode_waiting{", ""), 0.0);
}
