//! Encoded images → `decode_image` → `preprocess_image`, under small limits.
//!
//! First byte: bits 0–1 pick the pixel cap, bits 2–3 the alpha background; bit 7 set means
//! the rest is a media reference string (data URL, base64, path, URL) fetched through
//! `MediaFetcher` with local files and http disabled, as a request's `image_url` is.
//! Properties:
//! * nothing panics (libjpeg's fatal errors unwind inside `media::jpeg` and must be caught
//!   there, never escape) and every failure is a `MediaError`;
//! * a decoded image has both sides > 0, at most the pixel cap, and exactly w·h·3 bytes;
//! * preprocessing gives one temporal patch group and `t·h·w` rows of `patch_dim` finite values;
//! * with local files and http off, a path or URL is refused without touching disk or network.
#![no_main]

use std::cell::RefCell;
use std::sync::Once;

use libfuzzer_sys::fuzz_target;
use qwen3vl::media::config::ImageProcessorConfig;
use qwen3vl::media::{
    decode_image, preprocess_image, MediaError, MediaFetcher, MediaLimits, MediaSource,
    RgbaBackground,
};

const CAPS: [u64; 4] = [1, 64 * 64, 256 * 256, 1024 * 1024];
const BACKGROUNDS: [RgbaBackground; 4] = [
    RgbaBackground::White,
    RgbaBackground::Black,
    RgbaBackground::Drop,
    RgbaBackground::White,
];

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// libfuzzer-sys aborts on every panic, even one that is caught. The JPEG decoder reports
/// corrupt input by unwinding to a `catch_unwind` in the library (the designed path), so
/// panics are recorded instead, and only one that escapes the library is a crash.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
        }));
    });
}

fn no_escape<T>(f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            LAST_PANIC.with(|p| eprintln!("panic escaped the library: {}", p.borrow()));
            std::process::abort();
        }
    }
}

fn processor() -> ImageProcessorConfig {
    let mut cfg = ImageProcessorConfig::default();
    // Small budgets keep each run fast: 1–16 merged patches of 32×32 pixels.
    cfg.vision.min_pixels = 32 * 32;
    cfg.vision.max_pixels = 128 * 128;
    cfg
}

fn decode(bytes: &[u8], limits: &MediaLimits) {
    let img = match decode_image(bytes, limits) {
        Ok(i) => i,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(img.width > 0 && img.height > 0);
    let pixels = img.width as u64 * img.height as u64;
    assert!(pixels <= limits.max_image_pixels, "{pixels} pixels decoded");
    assert_eq!(img.data.len() as u64, pixels * 3);
    let cfg = processor();
    match preprocess_image(&img, &cfg) {
        Ok(p) => {
            let [t, h, w] = p.grid_thw;
            assert_eq!(t, 1);
            assert!(h > 0 && w > 0);
            let rows = (t * h * w) as usize;
            assert_eq!(p.pixel_values.len(), rows * cfg.vision.patch_dim());
            assert!(p.pixel_values.iter().all(|x| x.is_finite()));
        }
        Err(e) => assert!(matches!(e, MediaError::AspectRatio { .. }), "{e}"),
    }
}

fn reference(s: &str, limits: &MediaLimits) {
    let fetcher = MediaFetcher::new(limits.clone());
    match MediaSource::parse(s) {
        Ok(MediaSource::Http(_)) | Err(_) => {}
        Ok(MediaSource::File(p)) => {
            let e = fetcher.fetch(&MediaSource::File(p)).unwrap_err();
            assert!(matches!(e, MediaError::LocalAccessDisabled), "{e}");
        }
        Ok(src) => match fetcher.fetch(&src) {
            Ok(bytes) => {
                assert!(!bytes.is_empty());
                assert!(bytes.len() as u64 <= limits.max_item_bytes);
                decode(&bytes, limits);
            }
            Err(e) => assert!(
                matches!(e, MediaError::BadBase64(_) | MediaError::TooLarge { .. }),
                "{e}"
            ),
        },
    }
}

fuzz_target!(|data: &[u8]| {
    install_panic_hook();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let limits = MediaLimits {
        media_root: None,
        allow_http: false,
        max_item_bytes: 1 << 20,
        max_image_pixels: CAPS[(mode & 3) as usize],
        rgba_background: BACKGROUNDS[((mode >> 2) & 3) as usize],
        ..MediaLimits::default()
    };
    no_escape(|| {
        if mode & 0x80 != 0 {
            if let Ok(s) = std::str::from_utf8(rest) {
                reference(s, &limits);
            }
        } else {
            decode(rest, &limits);
        }
    });
});
