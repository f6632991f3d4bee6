//! A bounded walk over JPEG marker segments, up to the first scan, to pull out the EXIF and ICC
//! payloads without decoding anything.

use crate::ImagingError;

#[derive(Debug, Default)]
pub(crate) struct JpegSegments {
    /// TIFF-structured EXIF payload (after the `Exif\0\0` prefix).
    pub exif: Option<Vec<u8>>,
    /// ICC profile reassembled from its APP2 chunks, in sequence order.
    pub icc: Option<Vec<u8>>,
}

const ICC_TAG: &[u8] = b"ICC_PROFILE\0";

pub(crate) fn read(bytes: &[u8], max_icc_bytes: usize) -> Result<JpegSegments, ImagingError> {
    let mut out = JpegSegments::default();
    let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
    let mut icc_total = 0usize;
    let mut pos = 2; // past SOI
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            break;
        }
        let marker = bytes[pos + 1];
        if marker == 0xFF {
            pos += 1; // fill byte
            continue;
        }
        // Start of scan or end of image: no more metadata segments.
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        if len < 2 || pos + 2 + len > bytes.len() {
            break;
        }
        let body = &bytes[pos + 4..pos + 2 + len];
        match marker {
            0xE1 if out.exif.is_none() && body.starts_with(b"Exif\0\0") => {
                out.exif = Some(body[6..].to_vec());
            }
            0xE2 if body.starts_with(ICC_TAG) && body.len() > ICC_TAG.len() + 2 => {
                let seq = body[ICC_TAG.len()];
                let chunk = &body[ICC_TAG.len() + 2..];
                icc_total += chunk.len();
                if icc_total > max_icc_bytes {
                    return Err(ImagingError::IccTooLarge {
                        bytes: icc_total,
                        max: max_icc_bytes,
                    });
                }
                icc_chunks.push((seq, chunk));
            }
            _ => {}
        }
        pos += 2 + len;
    }
    if !icc_chunks.is_empty() {
        icc_chunks.sort_by_key(|(seq, _)| *seq);
        out.icc = Some(
            icc_chunks
                .iter()
                .flat_map(|(_, c)| c.iter().copied())
                .collect(),
        );
    }
    Ok(out)
}

/// Inserts an APP1 EXIF segment right after SOI. Used to carry the copyright tag (when asked)
/// into derivatives, which are otherwise written without any metadata.
pub fn insert_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(jpeg.len() + tiff.len() + 10);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}
