//! Generated gRPC code for every photos v1 contract, and the encoded file descriptor sets that
//! servers register for reflection. One crate for all contracts, so every service and client
//! agrees on one copy of each message type.

macro_rules! package {
    ($module:ident, $package:literal, $descriptor:literal) => {
        pub mod $module {
            pub mod v1 {
                tonic::include_proto!($package);
                /// Encoded `FileDescriptorSet` of this package, for gRPC reflection.
                pub const FILE_DESCRIPTOR_SET: &[u8] =
                    include_bytes!(concat!(env!("OUT_DIR"), "/", $descriptor));
            }
        }
    };
}

package!(catalog, "photos.catalog.v1", "catalog_descriptor.bin");
package!(media, "photos.media.v1", "media_descriptor.bin");
package!(storage, "photos.storage.v1", "storage_descriptor.bin");
package!(
    cache_admin,
    "photos.cache_admin.v1",
    "cache_admin_descriptor.bin"
);
package!(metrics, "photos.metrics.v1", "metrics_descriptor.bin");
package!(jobs, "photos.jobs.v1", "jobs_descriptor.bin");
package!(testing, "photos.testing.v1", "testing_descriptor.bin");
