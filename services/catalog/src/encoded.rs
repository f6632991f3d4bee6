//! `photos.catalog.v1.CatalogService` as mounted: the generated server, with the cached reads
//! taken off its hands. Those answer with response bytes already in protobuf wire format (what
//! the cache holds), written to the wire as they are: a cache hit decodes and encodes nothing,
//! which is what lets a cached page cost about what an empty call costs. Requests are decoded
//! by prost as usual; everything else (status, metadata, limits, the runtime's layers around
//! this service) is tonic's, as for any other method.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::BufMut;
use photos_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tonic::body::Body;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::codegen::{BoxFuture, Context, Future, Poll, Service, http};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::cache::Encoded;
use crate::grpc::CatalogGrpc;

#[derive(Clone)]
pub struct CatalogService {
    generated: CatalogServiceServer<CatalogGrpc>,
    grpc: Arc<CatalogGrpc>,
    max_decoding_message_size: usize,
}

impl CatalogService {
    pub(crate) fn new(grpc: CatalogGrpc, max_decoding_message_size: usize) -> Self {
        let grpc = Arc::new(grpc);
        CatalogService {
            generated: CatalogServiceServer::from_arc(grpc.clone())
                .max_decoding_message_size(max_decoding_message_size),
            grpc,
            max_decoding_message_size,
        }
    }
}

impl NamedService for CatalogService {
    const NAME: &'static str = <CatalogServiceServer<CatalogGrpc> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for CatalogService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Like the generated server: always ready (limits are the runtime's layers' job).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .strip_prefix(concat!("/photos.catalog.v1.CatalogService", "/"));
        let grpc = self.grpc.clone();
        let limit = self.max_decoding_message_size;
        macro_rules! encoded {
            ($method:ident) => {
                Box::pin(unary(request, limit, move |r| {
                    let grpc = grpc.clone();
                    async move { grpc.$method(r).await }
                }))
            };
        }
        match method {
            Some("ListAlbums") => encoded!(list_albums),
            Some("GetAlbum") => encoded!(get_album),
            Some("ListPhotos") => encoded!(list_photos),
            Some("ListRecentPhotos") => encoded!(list_recent_photos),
            Some("GetPhoto") => encoded!(get_photo),
            Some("GetCatalogStats") => encoded!(get_catalog_stats),
            _ => self.generated.call(request),
        }
    }
}

/// Serves one unary call whose handler answers encoded bytes.
async fn unary<Req, F, Fut>(
    request: http::Request<Body>,
    max_decoding_message_size: usize,
    handler: F,
) -> Result<http::Response<Body>, Infallible>
where
    Req: prost::Message + Default + Send + 'static,
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Encoded>, Status>>,
{
    let mut grpc = tonic::server::Grpc::new(EncodedCodec::<Req>(PhantomData))
        .apply_max_message_size_config(Some(max_decoding_message_size), None);
    Ok(grpc.unary(Handler(handler), request).await)
}

/// A unary handler as the tower service tonic drives.
struct Handler<F>(F);

impl<Req, F, Fut> Service<Request<Req>> for Handler<F>
where
    F: FnMut(Request<Req>) -> Fut,
    Fut: Future<Output = Result<Response<Encoded>, Status>>,
{
    type Response = Response<Encoded>;
    type Error = Status;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Req>) -> Fut {
        (self.0)(request)
    }
}

/// Decodes the request with prost; "encodes" the response by copying its bytes.
struct EncodedCodec<Req>(PhantomData<fn() -> Req>);

impl<Req: prost::Message + Default + Send + 'static> Codec for EncodedCodec<Req> {
    type Encode = Encoded;
    type Decode = Req;
    type Encoder = EncodedEncoder;
    type Decoder = tonic_prost::ProstDecoder<Req>;

    fn encoder(&mut self) -> EncodedEncoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct EncodedEncoder;

impl Encoder for EncodedEncoder {
    type Item = Encoded;
    type Error = Status;

    fn encode(&mut self, item: Encoded, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item.0);
        Ok(())
    }
}
