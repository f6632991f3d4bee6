//! The tonic service. RPCs not implemented yet answer UNIMPLEMENTED through the generated
//! default stubs; issue "Catalog service" fills them in.

use photos_proto::catalog::v1::catalog_service_server::CatalogService;

use crate::store::Store;

pub struct CatalogGrpc {
    #[allow(dead_code)]
    pub(crate) store: Store,
}

#[tonic::async_trait]
impl CatalogService for CatalogGrpc {}
