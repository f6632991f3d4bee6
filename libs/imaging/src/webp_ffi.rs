//! libwebp called directly, for memory: the safe `webp` crate imports every picture as 32-bit
//! ARGB (`use_argb = 1`), which libwebp then converts to YUV for a lossy encode, so each lossy
//! encode held a 4-byte-per-pixel copy it never reads (15 MB for a 2560×1440 variant, beside its
//! 5.5 MB of YUV). Here RGB(A) is imported straight to YUV for lossy (the same conversion
//! libwebp applies to the ARGB copy, so the output is byte-identical) and to ARGB only for
//! lossless, which needs it. This is the crate's only `unsafe` (see the crate's Cargo.toml).
#![allow(unsafe_code)]

use std::ffi::c_int;
use std::mem::MaybeUninit;

use libwebp_sys as sys;

pub(crate) fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
    config: &sys::WebPConfig,
) -> Result<Vec<u8>, String> {
    let channels: usize = if alpha { 4 } else { 3 };
    let row = width as usize * channels;
    if width == 0 || height == 0 || pixels.len() != row * height as usize {
        return Err(format!(
            "pixel buffer of {} bytes does not match {width}x{height}x{channels}",
            pixels.len()
        ));
    }
    let too_big = |_| format!("{width}x{height} is too large for libwebp");
    let (w, h, stride) = (
        c_int::try_from(width).map_err(too_big)?,
        c_int::try_from(height).map_err(too_big)?,
        c_int::try_from(row).map_err(too_big)?,
    );
    let mut picture = sys::WebPPicture::new().map_err(|()| "libwebp ABI mismatch".to_string())?;
    picture.use_argb = c_int::from(config.lossless != 0);
    picture.width = w;
    picture.height = h;
    // SAFETY: `pixels` holds exactly `height` rows of `stride` bytes (checked above) and outlives
    // the import, which copies it into buffers the picture owns. Every path below frees the
    // picture once, and the writer once, after the last use of each.
    unsafe {
        let imported = if alpha {
            sys::WebPPictureImportRGBA(&mut picture, pixels.as_ptr(), stride)
        } else {
            sys::WebPPictureImportRGB(&mut picture, pixels.as_ptr(), stride)
        };
        if imported == 0 {
            let error = picture.error_code;
            sys::WebPPictureFree(&mut picture);
            return Err(format!("importing the picture: {error:?}"));
        }
        let mut writer = MaybeUninit::<sys::WebPMemoryWriter>::uninit();
        sys::WebPMemoryWriterInit(writer.as_mut_ptr());
        let mut writer = writer.assume_init();
        picture.writer = Some(sys::WebPMemoryWrite);
        picture.custom_ptr = (&raw mut writer).cast();
        let ok = sys::WebPEncode(config, &mut picture);
        let error = picture.error_code;
        sys::WebPPictureFree(&mut picture);
        let out = if ok != 0 && !writer.mem.is_null() {
            std::slice::from_raw_parts(writer.mem, writer.size).to_vec()
        } else {
            Vec::new()
        };
        sys::WebPMemoryWriterClear(&mut writer);
        if ok == 0 {
            return Err(format!("{error:?}"));
        }
        Ok(out)
    }
}
