//! JPEG pixels through libjpeg-turbo's decoder (the mozjpeg build, C code only), so decoded
//! pixels are bit-identical to Pillow's (which bundles libjpeg-turbo): same integer IDCT, same
//! fancy chroma upsampling, same YCbCr→RGB tables. The pure-Rust decoder differs by up to a few
//! uint8 steps, which the resize then spreads.

use super::error::{MediaError, Result};

/// Decodes a baseline or progressive JPEG to packed RGB8. Returns `Ok(None)` for colour spaces
/// that libjpeg cannot convert to RGB (CMYK/YCCK), so the caller can fall back.
pub fn decode_rgb(bytes: &[u8]) -> Result<Option<(u32, u32, Vec<u8>)>> {
    if !has_eoi(bytes) {
        // libjpeg pads a truncated stream with grey and only warns; Pillow refuses such a file.
        return Err(MediaError::CorruptImage(
            "truncated JPEG (no end-of-image marker)".into(),
        ));
    }
    // libjpeg reports fatal errors by unwinding out of its error handler; contain that here.
    let result = std::panic::catch_unwind(|| -> std::io::Result<Option<(u32, u32, Vec<u8>)>> {
        let dec = mozjpeg::Decompress::new_mem(bytes)?;
        if matches!(
            dec.color_space(),
            mozjpeg::ColorSpace::JCS_CMYK | mozjpeg::ColorSpace::JCS_YCCK
        ) {
            return Ok(None);
        }
        let mut started = dec.rgb()?;
        let (w, h) = (started.width() as u32, started.height() as u32);
        let data = started.read_scanlines::<u8>()?;
        started.finish()?;
        Ok(Some((w, h, data)))
    });
    match result {
        Ok(Ok(Some((w, h, data)))) if data.len() == w as usize * h as usize * 3 => {
            Ok(Some((w, h, data)))
        }
        Ok(Ok(Some(_))) => Err(MediaError::CorruptImage("JPEG ended early".into())),
        Ok(Ok(None)) => Ok(None),
        Ok(Err(e)) => Err(MediaError::CorruptImage(e.to_string())),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "libjpeg error".into());
            Err(MediaError::CorruptImage(msg))
        }
    }
}

/// Whether the stream contains an end-of-image marker (possibly followed by padding/trailers).
fn has_eoi(bytes: &[u8]) -> bool {
    bytes.windows(2).rev().any(|w| w == [0xFF, 0xD9])
}
