use std::process::ExitCode;

use photos_catalog::CatalogConfig;

// A cached page is served from memory and a client decodes it into hundreds of small strings:
// allocation is a large share of both (glibc malloc/free were ~15% of the bench's profile).
// With mimalloc the bench's hit / empty-call ratio rose from 0.28-0.33 to 0.43 and a page's
// decode from 39-60 us to 20 us (services/catalog/README.md); the bench binary uses the same
// allocator so it measures what this binary runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    photos_runtime::app::run_main("photos-catalog", |config: CatalogConfig| async move {
        photos_catalog::build(config)
            .await?
            .run_until_stopped(photos_runtime::shutdown::signal())
            .await?;
        Ok(())
    })
}
