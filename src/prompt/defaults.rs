//! The processor files of a Qwen3-VL Instruct checkpoint, for checkpoints generated locally.

use std::path::Path;

use serde_json::json;

use super::template::BUILTIN_CHAT_TEMPLATE;
use super::PromptError;
use crate::media::config::{DEFAULT_PREPROCESSOR_CONFIG, DEFAULT_VIDEO_PREPROCESSOR_CONFIG};

/// Special tokens listed in the Qwen3-VL `tokenizer_config.json`.
const ADDITIONAL_SPECIAL_TOKENS: [&str; 13] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
];

/// `tokenizer_config.json` for a Qwen3-VL Instruct checkpoint (chat template included).
pub fn default_tokenizer_config() -> String {
    let cfg = json!({
        "add_bos_token": false,
        "add_prefix_space": false,
        "additional_special_tokens": ADDITIONAL_SPECIAL_TOKENS,
        "bos_token": null,
        "chat_template": BUILTIN_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": false,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 262144,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": false,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": null
    });
    serde_json::to_string_pretty(&cfg).unwrap_or_default() + "\n"
}

/// Writes `tokenizer.json` (copied from `tokenizer_json`), `tokenizer_config.json`,
/// `chat_template.jinja` (the built-in Qwen3-VL Instruct template), `preprocessor_config.json`
/// and `video_preprocessor_config.json` (the shipped Qwen3-VL-2B-Instruct values) into `dir`.
pub fn write_default_processor_files(dir: &Path, tokenizer_json: &Path) -> Result<(), PromptError> {
    let io = |p: &Path, e: std::io::Error| PromptError::Io(format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let dst = dir.join("tokenizer.json");
    // Copying a file onto itself would truncate it.
    let same =
        matches!((tokenizer_json.canonicalize(), dst.canonicalize()), (Ok(a), Ok(b)) if a == b);
    if !same {
        std::fs::copy(tokenizer_json, &dst).map_err(|e| io(tokenizer_json, e))?;
    }
    for (name, text) in [
        ("tokenizer_config.json", default_tokenizer_config()),
        ("chat_template.jinja", BUILTIN_CHAT_TEMPLATE.to_string()),
        (
            "preprocessor_config.json",
            DEFAULT_PREPROCESSOR_CONFIG.to_string(),
        ),
        (
            "video_preprocessor_config.json",
            DEFAULT_VIDEO_PREPROCESSOR_CONFIG.to_string(),
        ),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
    }
    Ok(())
}
