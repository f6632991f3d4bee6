//! The gateway's admin jobs endpoints against the real mesh: only admins start and read jobs,
//! unknown jobs are 404, bad options are refused, and a thumbnail regeneration started over
//! HTTP is run by the catalog's workers until every thumbnail object exists again in storage.

mod common;

use std::time::Duration;

use common::*;
use photos_gateway::auth::Role;
use photos_proto::catalog::v1::GetPhotoRequest;
use photos_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use photos_proto::jobs::v1::ListJobsRequest;
use photos_proto::jobs::v1::job_service_client::JobServiceClient;
use photos_proto::storage::v1::storage_service_client::StorageServiceClient;
use photos_proto::storage::v1::{DeleteObjectsRequest, HeadObjectRequest};

const START: &str = "/api/v1/admin/jobs/regenerate-thumbnails";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_start_and_read_jobs_and_unknown_jobs_are_404() {
    let env = Env::start().await;
    let admin = env.token("root", Role::Admin);
    let owner = env.token("olga", Role::Owner);
    let viewer = env.token("vera", Role::Viewer);

    for (who, token, expected) in [
        ("anonymous", None, 401),
        ("viewer", Some(&viewer), 403),
        ("owner", Some(&owner), 403),
    ] {
        let (status, head, body) = env
            .call("POST", START, token.map(String::as_str), None)
            .await;
        assert_eq!(status, expected, "{who} starting a job: {body}");
        assert_eq!(
            header(&head, "content-type"),
            Some("application/problem+json")
        );
        let (status, _, body) = env
            .call(
                "GET",
                "/api/v1/admin/jobs/1",
                token.map(String::as_str),
                None,
            )
            .await;
        assert_eq!(status, expected, "{who} reading a job: {body}");
    }
    // Refused before anything was queued.
    let mut jobs = JobServiceClient::new(channel(env.mesh.addresses.catalog).await);
    let listed = jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert!(listed.is_empty(), "{listed:?}");
    let (status, head, job) = env.call("POST", START, Some(&admin), None).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(
        header(&head, "location"),
        Some(format!("/api/v1/admin/jobs/{id}").as_str())
    );
    assert_eq!(job["kind"], "generate-thumbnails");
    let (status, _, again) = env
        .call(
            "GET",
            &format!("/api/v1/admin/jobs/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], id.as_str());
    let listed = jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);

    for unknown in ["999999", "not-a-job"] {
        let (status, _, body) = env
            .call(
                "GET",
                &format!("/api/v1/admin/jobs/{unknown}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, 404, "{unknown}: {body}");
        assert_eq!(body["kind"], "not_found", "{body}");
    }
    // The GET route is not a way to start one, nor the POST a way to read one.
    let (status, _, _) = env.call("GET", START, Some(&admin), None).await;
    assert_eq!(status, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_options_are_refused_with_the_reason() {
    let env = Env::start().await;
    let admin = env.token("root", Role::Admin);
    for (what, body, expected) in [
        ("malformed", "{", 400),
        ("unknown field", r#"{"colour":"red"}"#, 422),
        ("wrong type", r#"{"workers":"many"}"#, 422),
        ("too many workers", r#"{"workers":99}"#, 400),
        ("unknown album", r#"{"album_id":"424242"}"#, 404),
    ] {
        let (status, _, problem) = env.call("POST", START, Some(&admin), Some(body)).await;
        assert_eq!(status, expected, "{what}: {problem}");
        assert!(
            !problem["detail"].as_str().unwrap_or_default().is_empty(),
            "{what}: {problem}"
        );
    }
    let (status, _, problem) = common::request(
        env.mesh.addresses.gateway,
        "POST",
        START,
        &[("Authorization", &admin), ("Content-Type", "text/plain")],
        Some("album_id=1"),
    )
    .await;
    assert_eq!(status, 415, "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_same_job() {
    let env = Env::start().await;
    let admin = env.token("root", Role::Admin);
    let start = |key: &'static str| {
        let admin = admin.clone();
        let gateway = env.mesh.addresses.gateway;
        async move {
            let (status, _, body) = common::request(
                gateway,
                "POST",
                START,
                &[("Authorization", &admin), ("Idempotency-Key", key)],
                None,
            )
            .await;
            assert_eq!(status, 202, "{body}");
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let first = start("regen-1").await;
    assert_eq!(
        start("regen-1").await,
        first,
        "a retry returns the same job"
    );
    assert_ne!(
        start("regen-2").await,
        first,
        "another key starts another job"
    );
}

/// The thumbnail objects (JPEG and WebP) of a photo, as the catalog records them.
async fn thumbnail_keys(
    catalog: &mut CatalogServiceClient<tonic::transport::Channel>,
    photo: &str,
) -> Vec<String> {
    let photo = catalog
        .get_photo(GetPhotoRequest { id: photo.into() })
        .await
        .unwrap()
        .into_inner()
        .photo
        .unwrap();
    let keys: Vec<String> = photo
        .variants
        .into_iter()
        .filter(|v| v.preset == "thumbnail")
        .map(|v| v.object_key)
        .collect();
    assert_eq!(keys.len(), 2, "a JPEG and a WebP thumbnail");
    keys
}

async fn exists(storage: &mut StorageServiceClient<tonic::transport::Channel>, key: &str) -> bool {
    match storage
        .head_object(HeadObjectRequest { key: key.into() })
        .await
    {
        Ok(r) => r.into_inner().object.is_some_and(|o| o.size > 0),
        Err(s) if s.code() == tonic::Code::NotFound => false,
        Err(s) => panic!("head {key}: {s}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerating_thumbnails_rewrites_every_thumbnail_and_reports_progress() {
    let env = Env::start().await;
    let admin = env.token("root", Role::Admin);
    let owner = env.token("olga", Role::Owner);
    let album = env.create_album(&owner, true).await;
    let other = env.create_album(&owner, true).await;
    let mut photos = Vec::new();
    for seed in 0..4u8 {
        let (status, _, photo) = env
            .upload(
                &album,
                Some(&owner),
                &[],
                &form(&[], Some(&jpeg(320, 240, seed))),
            )
            .await;
        assert_eq!(status, 201, "{photo}");
        photos.push(photo["id"].as_str().unwrap().to_owned());
    }
    // A photo in another album: a job for `album` leaves it alone.
    let (status, _, outside) = env
        .upload(
            &other,
            Some(&owner),
            &[],
            &form(&[], Some(&jpeg(320, 240, 99))),
        )
        .await;
    assert_eq!(status, 201, "{outside}");

    let mut catalog = CatalogServiceClient::new(channel(env.mesh.addresses.catalog).await);
    let mut storage = StorageServiceClient::new(channel(env.mesh.addresses.storage).await);
    let mut keys = Vec::new();
    for photo in &photos {
        keys.extend(thumbnail_keys(&mut catalog, photo).await);
    }
    let outside_keys = thumbnail_keys(&mut catalog, outside["id"].as_str().unwrap()).await;
    // Lose every thumbnail object (as a bad deploy or a bucket mishap would).
    let all: Vec<String> = keys.iter().chain(&outside_keys).cloned().collect();
    storage
        .delete_objects(DeleteObjectsRequest { keys: all.clone() })
        .await
        .unwrap();
    for key in &all {
        assert!(!exists(&mut storage, key).await, "{key} was deleted");
    }

    let (status, head, job) = env
        .call(
            "POST",
            START,
            Some(&admin),
            Some(&format!(r#"{{"album_id":"{album}","workers":2}}"#)),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let location = header(&head, "location").unwrap().to_owned();
    let mut seen = Vec::new();
    let last = loop {
        let (status, _, job) = env.call("GET", &location, Some(&admin), None).await;
        assert_eq!(status, 200, "{job}");
        let done = job["done"].as_u64().unwrap();
        seen.push(done);
        if job["finished"] == true {
            break job;
        }
        assert!(
            seen.len() < 1200,
            "the job did not finish within 2 minutes: {job}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(last["state"], "succeeded", "{last}");
    assert_eq!(last["total"], 4, "one item per photo of the album: {last}");
    assert_eq!(
        (last["done"].as_u64(), last["failed"].as_u64()),
        (Some(4), Some(0))
    );
    assert_eq!(last["percent"], 100);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {seen:?}"
    );

    // The work really happened: every thumbnail of the album is back in storage, recorded on
    // its photo, and served through the gateway as an image.
    for photo in &photos {
        for key in thumbnail_keys(&mut catalog, photo).await {
            assert!(exists(&mut storage, &key).await, "{key} was regenerated");
        }
    }
    for key in &outside_keys {
        assert!(
            !exists(&mut storage, key).await,
            "{key} is outside the job's album"
        );
    }
    let (_, _, photo) = env
        .call("GET", &format!("/api/v1/photos/{}", photos[0]), None, None)
        .await;
    let thumb = photo["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["preset"] == "thumbnail" && s["format"] == "jpeg")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let rest = thumb.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let (status, _, bytes) = photos_testkit::http::request_bytes(
        host.parse().unwrap(),
        "GET",
        path,
        &[("Host", host)],
        None,
    )
    .await;
    assert_eq!(status, 200, "the regenerated thumbnail is served");
    let image = image::load_from_memory(&bytes).expect("a decodable thumbnail");
    assert!(
        image.width() > 0 && image.width() <= 400,
        "{}",
        image.width()
    );
}
