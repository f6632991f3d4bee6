//! The photos image pipeline, as a pure library (bytes in, bytes out, no I/O).
//!
//! Format by magic bytes; limits checked from the header before any pixel buffer exists; JPEG
//! decoded once with DCT-domain scaling; ICC profiles converted to sRGB; EXIF orientation
//! applied; every preset cut by Lanczos3 from the next larger one; progressive JPEG and WebP
//! encoded in parallel with no metadata carried over; placeholders and content-addressed keys.

mod decode;
mod encode;
mod error;
pub mod geometry;
mod jpeg_segments;
mod pipeline;
mod placeholders;
mod probe;
mod resize;
mod sniff;
mod webp_ffi;

pub use decode::{Raster, decode};
pub use encode::{OutputFormat, WebpOptions, encode_jpeg, encode_webp, encode_webp_threads};
pub use error::ImagingError;
pub use geometry::Fit;
pub use jpeg_segments::insert_exif;
pub use pipeline::{
    Preset, ProcessOptions, Processed, TRANSFORM_VERSION, Variant, default_presets, process,
    variant_key,
};
pub use placeholders::{MAX_BLUR_URI_BYTES, Placeholders, dominant_color};
pub use probe::{ImageInfo, Limits, TakenAt, content_sha256, probe};
pub use resize::{Window, best_window, resize, smart_window};
pub use sniff::{Format, sniff};
