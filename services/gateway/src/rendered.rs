//! The album list as it leaves the gateway, kept per listing: the JSON body and its ETag, with
//! the catalog's answer (in its protobuf wire bytes) it was rendered from and until when its
//! signed URLs would be handed out unchanged. The catalog is still asked on every request (it
//! decides what is current); only when it answers byte for byte what it answered before, and
//! every signed URL in the page is still within its reuse window, is the stored body sent
//! again. That body is exactly what rendering would produce, since the page is a function of
//! the catalog's answer and its URLs, and the ETag stays the hash of the body.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Instant;

use axum::http::HeaderValue;
use axum::http::uri::PathAndQuery;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use photos_proto::catalog::v1 as pb;
use photos_runtime::client::Channel;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};

/// Bytes the stored pages may take in all (catalog answer plus body).
const MAX_BYTES: u64 = 32 * 1024 * 1024;

/// A listing: the catalog request's fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListingKey {
    pub published_only: bool,
    pub owner_id: String,
    pub page_size: i32,
    pub page_token: String,
    pub preview_count: i32,
}

/// A page as sent.
pub struct Page {
    /// The catalog's answer it was rendered from.
    catalog: Bytes,
    /// Until when its URLs are what rendering would write; None: no signed URL in it.
    reuse_until: Option<Instant>,
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Page {
    pub fn new(catalog: Bytes, reuse_until: Option<Instant>, body: Bytes) -> Self {
        let etag = crate::http_cache::etag_of(&body);
        Self {
            catalog,
            reuse_until,
            body,
            etag,
        }
    }
}

#[derive(Clone)]
pub struct RenderedPages(moka::sync::Cache<ListingKey, Arc<Page>>);

impl Default for RenderedPages {
    fn default() -> Self {
        Self(
            moka::sync::Cache::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|_, p: &Arc<Page>| {
                    u32::try_from(p.catalog.len() + p.body.len()).unwrap_or(u32::MAX)
                })
                .build(),
        )
    }
}

impl RenderedPages {
    /// The stored page for `key` if it was rendered from exactly `catalog` and its URLs are
    /// still the current ones at `now`.
    pub fn get(&self, key: &ListingKey, catalog: &[u8], now: Instant) -> Option<Arc<Page>> {
        self.0
            .get(key)
            .filter(|p| p.catalog == catalog && p.reuse_until.is_none_or(|t| now < t))
    }

    pub fn insert(&self, key: ListingKey, page: Page) -> Arc<Page> {
        let page = Arc::new(page);
        self.0.insert(key, page.clone());
        page
    }
}

const LIST_ALBUMS: &str = "/photos.catalog.v1.CatalogService/ListAlbums";

/// `CatalogService/ListAlbums` as the generated client makes it (same channel, so the same
/// span, trace context and deadline), with the answer left in its wire bytes.
pub async fn list_albums(
    channel: Channel,
    request: pb::ListAlbumsRequest,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(format!("Service was not ready: {e}")))?;
    let mut request = tonic::Request::new(request);
    request.extensions_mut().insert(tonic::GrpcMethod::new(
        "photos.catalog.v1.CatalogService",
        "ListAlbums",
    ));
    Ok(grpc
        .unary(
            request,
            PathAndQuery::from_static(LIST_ALBUMS),
            RawAnswer::default(),
        )
        .await?
        .into_inner())
}

/// A unary call's codec that encodes the request with prost and hands back the answer's
/// protobuf bytes undecoded.
pub struct RawAnswer<Req>(PhantomData<Req>);

impl<Req> Default for RawAnswer<Req> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req: prost::Message + Send + 'static> Codec for RawAnswer<Req> {
    type Encode = Req;
    type Decode = Bytes;
    type Encoder = tonic_prost::ProstEncoder<Req>;
    type Decoder = AnswerBytes;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        AnswerBytes
    }
}

pub struct AnswerBytes;

impl Decoder for AnswerBytes {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        // A copy, not `copy_to_bytes`: that would share (and keep alive, while the page is
        // stored) tonic's whole receive buffer, which the store's weigher does not see.
        let mut own = BytesMut::with_capacity(buf.remaining());
        own.put(buf);
        Ok(Some(own.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key() -> ListingKey {
        ListingKey {
            published_only: true,
            owner_id: String::new(),
            page_size: 20,
            page_token: String::new(),
            preview_count: 4,
        }
    }

    #[test]
    fn a_page_is_reused_only_for_the_same_answer_within_its_urls_window() {
        let pages = RenderedPages::default();
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(300);
        pages.insert(
            key(),
            Page::new(
                Bytes::from_static(b"answer"),
                Some(until),
                Bytes::from_static(b"{}"),
            ),
        );
        assert!(pages.get(&key(), b"answer", t0).is_some());
        assert!(pages.get(&key(), b"answer!", t0).is_none());
        assert!(pages.get(&key(), b"answer", until).is_none());
        let other = ListingKey {
            page_token: "x".into(),
            ..key()
        };
        assert!(pages.get(&other, b"answer", t0).is_none());
    }

    #[test]
    fn a_page_without_signed_urls_does_not_expire() {
        let pages = RenderedPages::default();
        pages.insert(
            key(),
            Page::new(Bytes::from_static(b"a"), None, Bytes::from_static(b"[]")),
        );
        let later = Instant::now() + Duration::from_secs(86_400);
        let page = pages.get(&key(), b"a", later).expect("kept");
        assert_eq!(page.etag, crate::http_cache::etag_of(b"[]"));
    }
}
