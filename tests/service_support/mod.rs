//! Shared helpers for the HTTP service tests: a tiny random checkpoint with the real tokenizer,
//! server configurations on loopback port 0, SSE / NUL frame parsing, test images.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use qwen3vl::pipeline::KvCacheSize;
use qwen3vl::prompt::write_default_processor_files;
use qwen3vl::service::{ServiceConfig, Settings};
use qwen3vl::tools::random_checkpoint::{write_random_checkpoint, Arch};
use serde_json::Value;

#[path = "../preprocess_support/mod.rs"]
mod preprocess_support;

pub use preprocess_support::tokenizer_json;

/// A 2-layer tiny checkpoint (real vocabulary) with the default processor files.
pub fn tiny_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        write_random_checkpoint(Arch::Tiny, Some(2), dir.path(), 7).expect("checkpoint");
        write_default_processor_files(dir.path(), &tokenizer_json()).expect("processor files");
        dir
    })
    .path()
}

/// The folder media paths may point into: the committed fixture clips and images.
pub fn media_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/processor/inputs")
}

/// Loopback, port 0, small limits that a 2-core machine runs quickly.
pub fn settings() -> Settings {
    Settings {
        model_dir: Some(tiny_model().to_path_buf()),
        host: Some("127.0.0.1".into()),
        port: Some(0),
        media_root: Some(media_root()),
        allow_http_media: Some(false),
        max_seq_len: Some(4096),
        max_input_token_len: Some(3072),
        max_prefill_tokens: Some(4096),
        max_iter_times: Some(512),
        max_batch_size: Some(64),
        max_prefill_batch_size: Some(16),
        block_size: Some(16),
        http_workers: Some(2),
        media_workers: Some(2),
        max_request_mb: Some(2),
        shutdown_timeout_s: Some(10),
        ..Default::default()
    }
}

pub fn config(s: Settings) -> ServiceConfig {
    let mut c = s.finish().expect("config");
    c.kv_cache = KvCacheSize::Blocks(2048);
    c
}

/// Split an SSE body into its `data:` payloads (`[DONE]` included as a string).
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|ev| ev.trim().strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

/// SSE payloads parsed as JSON, stopping at `[DONE]`; also says whether `[DONE]` came.
pub fn sse_json(body: &str) -> (Vec<Value>, bool) {
    let mut out = Vec::new();
    for ev in sse_events(body) {
        if ev == "[DONE]" {
            return (out, true);
        }
        out.push(serde_json::from_str(&ev).unwrap_or_else(|e| panic!("bad frame {ev:?}: {e}")));
    }
    (out, false)
}

/// A PNG of `w × h` with a gradient, as a `data:` URL.
pub fn png_data_url(w: u32, h: u32) -> String {
    use base64::Engine;
    let img =
        image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 128]));
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .expect("png");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(buf.into_inner())
    )
}
