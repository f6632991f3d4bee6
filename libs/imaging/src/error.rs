/// Why an image could not be processed. Each variant maps to one client-facing class: bad input
/// (the bytes are not an image we accept), too large (a limit), or internal (our encoder failed).
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("empty body: send the image bytes")]
    Empty,
    #[error("unsupported format ({detected}): send a JPEG, PNG, WebP or GIF image")]
    UnsupportedFormat { detected: &'static str },
    #[error("corrupt or truncated {format} image: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    #[error("image is {bytes} bytes, above the limit of {max} bytes")]
    TooManyBytes { bytes: u64, max: u64 },
    #[error("image is {width}x{height} ({pixels} pixels), above the limit of {max} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        max: u64,
    },
    #[error("image is {width}x{height}, a side above the limit of {max} pixels")]
    DimensionTooLarge { width: u32, height: u32, max: u32 },
    #[error("image exceeds the decoder limits: {reason}")]
    DecoderLimit { reason: String },
    #[error("icc profile is {bytes} bytes, above the limit of {max} bytes")]
    IccTooLarge { bytes: usize, max: usize },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error("encoding {format} failed: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
}

impl ImagingError {
    /// Limits are a separate class (RESOURCE_EXHAUSTED / 413) from malformed input.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ImagingError::TooManyBytes { .. }
                | ImagingError::TooManyPixels { .. }
                | ImagingError::DimensionTooLarge { .. }
                | ImagingError::IccTooLarge { .. }
                | ImagingError::DecoderLimit { .. }
        )
    }

    /// Our own failure rather than the caller's input.
    pub fn is_internal(&self) -> bool {
        matches!(self, ImagingError::Encode { .. })
    }
}
