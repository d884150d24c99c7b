//! Image decoding (JPEG, PNG, WebP, GIF first frame, BMP) and the `Qwen2VLImageProcessor` pipeline.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::config::{ImageProcessorConfig, ImageProcessorKind};
use super::error::{MediaError, Result};
use super::patchify::{patchify, value_lut, Normalization};
use super::resize::{resize_rgb8_with, smart_resize, Resampler};
use super::{MediaLimits, RgbaBackground};

/// A decoded image: packed 8-bit RGB, row-major, `width · height · 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// Patch rows for one image or video, ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchedVisual {
    /// `grid_thw[0]·grid_thw[1]·grid_thw[2]` rows of `patch_dim` values each.
    pub pixel_values: Vec<f32>,
    /// `[t, h, w]` in patches.
    pub grid_thw: [u32; 3],
}

impl PatchedVisual {
    /// Number of LLM placeholder tokens this visual expands to (`t·h·w / merge²`).
    pub fn num_tokens(&self, merge_size: u32) -> usize {
        let [t, h, w] = self.grid_thw;
        (t as usize * h as usize * w as usize) / (merge_size * merge_size) as usize
    }
}

fn map_image_error(e: ImageError) -> MediaError {
    match e {
        ImageError::Unsupported(u) => MediaError::UnsupportedImageFormat(Some(u.to_string())),
        ImageError::Limits(l) => MediaError::CorruptImage(format!("decoder limit exceeded: {l}")),
        other => MediaError::CorruptImage(other.to_string()),
    }
}

/// Decodes an encoded image, applies its EXIF orientation and flattens any alpha onto white.
///
/// Dimensions are checked against `limits.max_image_pixels` before the pixels are decoded.
pub fn decode_image(bytes: &[u8], limits: &MediaLimits) -> Result<RgbImage> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::CorruptImage(e.to_string()))?;
    let format = reader.format();
    match format {
        Some(
            ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::WebP
            | ImageFormat::Gif
            | ImageFormat::Bmp,
        ) => {}
        Some(f) => return Err(MediaError::UnsupportedImageFormat(Some(format!("{f:?}")))),
        None => return Err(MediaError::UnsupportedImageFormat(None)),
    }
    let mut decoder = reader.into_decoder().map_err(map_image_error)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(MediaError::EmptyImage { width, height });
    }
    let pixels = width as u64 * height as u64;
    if pixels > limits.max_image_pixels {
        return Err(MediaError::TooManyPixels {
            width,
            height,
            pixels,
            limit: limits.max_image_pixels,
        });
    }
    let mut dec_limits = image::Limits::default();
    // Enough for the largest allowed image at 16 bits per channel with alpha, plus slack.
    dec_limits.max_alloc = Some(
        limits
            .max_image_pixels
            .saturating_mul(8)
            .saturating_add(64 << 20),
    );
    decoder.set_limits(dec_limits).map_err(map_image_error)?;
    // A broken EXIF block must not make an otherwise good image unusable.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let is_jpeg = matches!(format, Some(ImageFormat::Jpeg));
    let jpeg = if is_jpeg {
        super::jpeg::decode_rgb(bytes)?
    } else {
        None
    };
    let mut img = match jpeg {
        Some((w, h, data)) => {
            let buf = image::RgbImage::from_raw(w, h, data)
                .ok_or_else(|| MediaError::CorruptImage("JPEG size mismatch".into()))?;
            DynamicImage::ImageRgb8(buf)
        }
        None => decode_contained(decoder)?,
    };
    img.apply_orientation(orientation);
    Ok(to_rgb(img, limits.rgba_background))
}

/// Runs the `image` crate's decoder, turning a panic inside it into an error. The decoders are
/// safe Rust, but not every arithmetic path is checked for hostile input: fuzzing found a WebP
/// lossless Huffman table whose code-length sum overflows (`image-webp` 0.2.4, `huffman.rs`),
/// which panics where overflow checks are on. One bad image must not become a 500 or take a
/// worker down.
fn decode_contained(decoder: impl ImageDecoder) -> Result<DynamicImage> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        DynamicImage::from_decoder(decoder)
    })) {
        Ok(r) => r.map_err(map_image_error),
        Err(_) => Err(MediaError::CorruptImage(
            "the image data is corrupt (the decoder failed on it)".into(),
        )),
    }
}

/// Converts to RGB8, flattening any alpha channel as `background` says.
pub fn to_rgb(img: DynamicImage, background: RgbaBackground) -> RgbImage {
    match background {
        RgbaBackground::White => to_rgb_on(img, 255),
        RgbaBackground::Black => to_rgb_on(img, 0),
        RgbaBackground::Drop => RgbImage {
            width: img.width(),
            height: img.height(),
            data: img.into_rgb8().into_raw(),
        },
    }
}

/// Converts to RGB8; images with alpha are composited on white exactly like
/// `Image.new("RGB", size, white).paste(img, mask=alpha)` (PIL's `DIV255` rounding).
pub fn to_rgb_on_white(img: DynamicImage) -> RgbImage {
    to_rgb_on(img, 255)
}

/// Alpha compositing onto a grey level `bg` with PIL's `DIV255` rounding.
fn to_rgb_on(img: DynamicImage, bg: u32) -> RgbImage {
    let (width, height) = (img.width(), img.height());
    let data = if img.color().has_alpha() {
        let rgba = img.into_rgba8().into_raw();
        let mut out = Vec::with_capacity(rgba.len() / 4 * 3);
        for px in rgba.chunks_exact(4) {
            let a = px[3] as u32;
            for &c in &px[..3] {
                let t = bg * (255 - a) + c as u32 * a + 128;
                out.push((((t >> 8) + t) >> 8) as u8);
            }
        }
        out
    } else {
        img.into_rgb8().into_raw()
    };
    RgbImage {
        width,
        height,
        data,
    }
}

/// Runs the image processor on one decoded image: smart_resize, bicubic resampling (torch's
/// uint8 kernel, or PIL's for the slow-processor parity mode), rescale + normalise, temporal
/// duplication and patch flattening.
pub fn preprocess_image(img: &RgbImage, cfg: &ImageProcessorConfig) -> Result<PatchedVisual> {
    let v = &cfg.vision;
    let (h, w) = (img.height as usize, img.width as usize);
    let (rh, rw) = if v.do_resize {
        smart_resize(
            img.height,
            img.width,
            v.factor(),
            v.min_pixels,
            v.max_pixels,
        )?
    } else {
        (img.height, img.width)
    };
    if rh % v.factor() != 0 || rw % v.factor() != 0 {
        return Err(MediaError::Config(format!(
            "image of {rw}x{rh} is not a multiple of {} and resizing is disabled",
            v.factor()
        )));
    }
    // The fast processor resizes uint8 tensors with torch and normalises in one fused f32 step;
    // the slow one resizes with PIL and rescales in f64 first (see `ImageProcessorKind`).
    let (resampler, norm) = match cfg.kind {
        ImageProcessorKind::Fast => (Resampler::TorchUint8, Normalization::TorchFused),
        ImageProcessorKind::SlowPilParity => (Resampler::Pil, Normalization::Numpy),
    };
    let resized = resize_rgb8_with(
        &img.data,
        w,
        h,
        rw as usize,
        rh as usize,
        resampler,
        v.resample,
    );
    let lut = value_lut(v, norm);
    // One frame; `patchify` repeats it to fill the temporal patch.
    let (pixel_values, grid_thw) = patchify(&[resized], rh as usize, rw as usize, v, &lut);
    Ok(PatchedVisual {
        pixel_values,
        grid_thw,
    })
}
