//! The server's settings as one clap + serde type. The same [`Settings`] is the command line
//! of `qwen3vl serve` (flattened into it), a settings file (`--settings FILE`: JSON whose keys
//! are the flags' names in snake_case), and what MindIE's `config.json` maps to
//! (`service::mindie_config`). Every field is optional: sources are layered with
//! [`Settings::over`] (flags over the settings file over `config.json`) and
//! [`Settings::finish`](super::config) fills the defaults and derives the service's, the
//! pipeline's and the scheduler's configs.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::model_args::as_text;
use crate::engine::ModelArgs;
use crate::media::RgbaBackground;
use crate::pipeline::Truncation;

/// Partial settings from one source.
#[derive(clap::Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Checkpoint folder (config.json, safetensors, tokenizer.json, processor configs).
    #[arg(long = "model", value_name = "DIR")]
    #[serde(rename = "model")]
    pub model_dir: Option<PathBuf>,
    /// tokenizer.json to use when the checkpoint has none.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Name clients must send as `model` (MindIE `modelName`; default "qwen3vl").
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Listen address (MindIE `ipAddress`; default 127.0.0.1).
    #[arg(long)]
    pub host: Option<String>,
    /// Listen port (MindIE `port`; default 1025; 0 picks a free one).
    #[arg(long)]
    pub port: Option<u16>,
    /// MindIE `managementIpAddress` (default: the listen address).
    #[arg(skip)]
    pub management_host: Option<String>,
    /// Also listen here (MindIE `managementPort`).
    #[arg(long)]
    pub management_port: Option<u16>,
    /// Also listen here (MindIE `metricsPort`).
    #[arg(long)]
    pub metrics_port: Option<u16>,
    /// MindIE `allowAllZeroIpListening`: whether 0.0.0.0 / :: may be the listen address.
    #[arg(skip)]
    pub allow_all_zero_ip: Option<bool>,
    /// Requests processed at once (MindIE `maxLinkNum`; default 1000); twice as many queue,
    /// the rest get 503.
    #[arg(long)]
    pub max_link_num: Option<usize>,
    /// Largest request body and media item, in MB (MindIE `maxRequestLength`; default 40).
    #[arg(long = "max-request-length", value_name = "MB")]
    #[serde(rename = "max_request_length")]
    pub max_request_mb: Option<usize>,
    /// Seconds to wait for the next token (MindIE `tokenTimeout`; default 600).
    #[arg(long = "token-timeout", value_name = "SECONDS")]
    #[serde(rename = "token_timeout")]
    pub token_timeout_s: Option<u64>,
    /// Seconds per request (MindIE `e2eTimeout`; default 600).
    #[arg(long = "e2e-timeout", value_name = "SECONDS")]
    #[serde(rename = "e2e_timeout")]
    pub e2e_timeout_s: Option<u64>,
    /// Stream frames carry the whole text so far (MindIE `fullTextEnabled`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub full_text: Option<bool>,
    /// MindIE `httpsEnabled` (default: HTTPS when a certificate and a key are given).
    #[arg(skip)]
    pub https: Option<bool>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Prompt + output tokens (MindIE `maxSeqLen`; default 2560).
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Prompt tokens (MindIE `maxInputTokenLen`; default 2048).
    #[arg(long)]
    pub max_input_token_len: Option<usize>,
    /// Too-long prompts: error (default), left (keep the end) or right (keep the start).
    #[arg(long)]
    #[serde(with = "as_text")]
    pub truncation: Option<Truncation>,
    /// Output cap and default max_tokens (MindIE `maxIterTimes`; default 512).
    #[arg(long)]
    pub max_iter_times: Option<usize>,
    /// Sequences decoded together (MindIE `maxBatchSize`; default 200).
    #[arg(long)]
    pub max_batch_size: Option<usize>,
    /// Sequences joining in one step (MindIE `maxPrefillBatchSize`).
    #[arg(long)]
    pub max_prefill_batch_size: Option<usize>,
    /// Prompt tokens admitted in one step (MindIE `maxPrefillTokens`).
    #[arg(long)]
    pub max_prefill_tokens: Option<usize>,
    /// SplitFuse: prefill prompts in chunks of N tokens alongside decode steps (MindIE
    /// `templateType: "Mix"`; default 0 = whole prompts).
    #[arg(long)]
    pub prefill_chunk: Option<usize>,
    /// Tokens per KV block (MindIE `cacheBlockSize`; default 128).
    #[arg(long)]
    pub block_size: Option<usize>,
    /// KV cache size in GiB (MindIE `npuMemSize`; default: half the free memory, capped at
    /// what maxBatchSize full sequences need).
    #[arg(long)]
    pub kv_cache_gib: Option<f64>,
    /// Local media (plain paths, file://) may be read only under this folder
    /// (default /data/multimodal_inputs, MindIE's).
    #[arg(long)]
    pub media_root: Option<PathBuf>,
    /// Whether http(s):// media URLs are fetched (the flag `--no-http-media` refuses them).
    #[arg(long = "no-http-media", num_args = 0, default_missing_value = "false")]
    pub allow_http_media: Option<bool>,
    /// Images + videos per request (default 20).
    #[arg(long)]
    pub max_media_items: Option<usize>,
    /// Processor settings for every request, as vLLM's flag: a JSON object with `size`,
    /// `min_pixels`, `max_pixels` (images), `total_pixels`, `fps`, `num_frames`, `min_frames`,
    /// `max_frames` (videos). Requests layer their own `mm_processor_kwargs` on top.
    #[arg(long, value_parser = parse_json_object)]
    pub mm_processor_kwargs: Option<serde_json::Value>,
    /// Most pixels an image may be resized to; requests may lower it, never raise it
    /// (default: the checkpoint's `size.longest_edge`).
    #[arg(long)]
    pub max_image_pixels: Option<u64>,
    /// Most frames sampled from one video; requests may lower it, never raise it.
    #[arg(long)]
    pub max_video_frames: Option<u32>,
    /// What transparent image areas become: white (vLLM, qwen-vl-utils; default), black, or
    /// drop (transformers' `load_image` keeps the colour under the alpha channel).
    #[arg(long)]
    #[serde(with = "as_text")]
    pub rgba_background: Option<RgbaBackground>,
    /// Prompt-injection guard: control-token text (`<|im_start|>`, `<|image_pad|>`, …) in
    /// user and tool message content is tokenized as plain text. Off by default: transformers
    /// and vLLM turn such text into the real control tokens.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub escape_user_special_tokens: Option<bool>,
    /// Requests preprocessed at once (MindIE `tokenizerProcessNumber`).
    #[arg(long)]
    pub media_workers: Option<usize>,
    /// HTTP worker threads (default: cores, at most 4).
    #[arg(long)]
    pub http_workers: Option<usize>,
    /// Seconds in-flight requests get after SIGTERM (default 30); those still running then end
    /// with a 503 / an error event naming the shutdown.
    #[arg(long = "shutdown-timeout", value_name = "SECONDS")]
    #[serde(rename = "shutdown_timeout")]
    pub shutdown_timeout_s: Option<u64>,
    /// Hosts whose media URLs may resolve to loopback, private or link-local addresses
    /// (comma-separated; subdomains match). Every other host must be public (SSRF policy).
    #[arg(long, value_delimiter = ',')]
    pub allowed_media_domains: Option<Vec<String>>,
    /// Seconds to open a connection for an http(s) media item (default 5).
    #[arg(long = "media-connect-timeout", value_name = "SECONDS")]
    #[serde(rename = "media_connect_timeout")]
    pub media_connect_timeout_s: Option<f64>,
    /// Longest silence, in seconds, inside an http(s) media response (default 10).
    #[arg(long = "media-read-timeout", value_name = "SECONDS")]
    #[serde(rename = "media_read_timeout")]
    pub media_read_timeout_s: Option<f64>,
    /// Seconds for the whole fetch of one http(s) media item, redirects included (default 30).
    #[arg(long = "media-fetch-timeout", value_name = "SECONDS")]
    #[serde(rename = "media_fetch_timeout")]
    pub media_fetch_timeout_s: Option<f64>,
    /// Seconds for all http(s) media of one request (default 60).
    #[arg(long = "media-deadline", value_name = "SECONDS")]
    #[serde(rename = "media_deadline")]
    pub media_deadline_s: Option<f64>,
    /// Seconds to read a whole request, headers and body (default 30).
    #[arg(long = "request-read-timeout", value_name = "SECONDS")]
    #[serde(rename = "request_read_timeout")]
    pub request_read_timeout_s: Option<f64>,
    /// Speculative decoding, as vLLM's flag: `{"method": "ngram", "num_speculative_tokens": 5,
    /// "prompt_lookup_min": 1, "prompt_lookup_max": 5, "max_draft_batch": 4}` (output unchanged;
    /// fewer model steps when the output repeats earlier text).
    #[arg(long, value_parser = parse_json_object)]
    pub speculative_config: Option<serde_json::Value>,
    /// Weight precision, kernel backend, quantization and compute threads.
    #[command(flatten)]
    #[serde(flatten)]
    pub model: ModelArgs,
}

fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str::<serde_json::Value>(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("expected a JSON object".into()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

macro_rules! merge_fields {
    ($hi:ident, $lo:ident; $($f:ident),* $(,)?) => {
        Settings { model: $hi.model.over($lo.model), $($f: $hi.$f.or($lo.$f)),* }
    };
}

impl Settings {
    /// `self` where set, else `lower`.
    pub fn over(self, lower: Settings) -> Settings {
        let (a, b) = (self, lower);
        merge_fields!(a, b; model_dir, tokenizer, served_model_name, host, port, management_host,
            management_port, metrics_port, allow_all_zero_ip, max_link_num, max_request_mb,
            token_timeout_s, e2e_timeout_s, full_text, https, tls_cert, tls_key, max_seq_len,
            max_input_token_len, truncation, max_iter_times, max_batch_size,
            max_prefill_batch_size, max_prefill_tokens, prefill_chunk, block_size, kv_cache_gib,
            media_root, allow_http_media, max_media_items, mm_processor_kwargs, max_image_pixels,
            max_video_frames, rgba_background, escape_user_special_tokens, media_workers,
            http_workers, shutdown_timeout_s, allowed_media_domains, media_connect_timeout_s,
            media_read_timeout_s, media_fetch_timeout_s, media_deadline_s, request_read_timeout_s,
            speculative_config)
    }

    /// A settings file: a JSON object whose keys are the flags' names in snake_case
    /// (`{"port": 8080, "max_batch_size": 16, "dtype": "bf16"}`). An unknown key is an error
    /// naming it (a misspelt setting must not be ignored).
    pub fn from_json(text: &str) -> Result<Settings, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let Some(given) = value.as_object() else {
            return Err("expected a JSON object of settings".into());
        };
        // Every field serializes (unset ones as null), so the default's keys are all the keys.
        let known = serde_json::to_value(Settings::default()).expect("settings serialize");
        let known = known.as_object().expect("an object");
        let unknown: Vec<&str> = given
            .keys()
            .filter(|k| !known.contains_key(*k))
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(format!("unknown settings: {}", unknown.join(", ")));
        }
        // Each key alone first, so that an error names its setting (serde's flattening of the
        // model flags loses the field path).
        for (k, v) in given {
            let one = serde_json::Value::Object([(k.clone(), v.clone())].into_iter().collect());
            if let Err(e) = serde_json::from_value::<Settings>(one) {
                return Err(format!("setting `{k}`: {e}"));
            }
        }
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    /// [`Settings::from_json`] on a file.
    pub fn from_file(path: &std::path::Path) -> Result<Settings, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Settings::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::engine::Precision;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        s: Settings,
    }

    fn flags(args: &[&str]) -> Settings {
        let mut argv = vec!["serve"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap().s
    }

    /// The command line, a settings file and the merged result are one type: the same
    /// setting spelt as a flag and as a file key lands in the same field.
    #[test]
    fn flags_and_file_fill_the_same_fields() {
        let cli = flags(&[
            "--model",
            "/m",
            "--port",
            "8080",
            "--no-http-media",
            "--full-text",
            "--token-timeout",
            "9",
            "--dtype",
            "f16",
            "--threads",
            "3",
            "--allowed-media-domains",
            "a.test,b.test",
        ]);
        let file = Settings::from_json(
            r#"{"model": "/m", "port": 8080, "allow_http_media": false, "full_text": true,
                "token_timeout": 9, "dtype": "f16", "threads": 3,
                "allowed_media_domains": ["a.test", "b.test"]}"#,
        )
        .unwrap();
        assert_eq!(cli, file);
        assert_eq!(cli.model.dtype, Some(Precision::F16));
        assert_eq!(flags(&[]), Settings::default());
        // Serializing and reading back is the identity.
        let json = serde_json::to_string(&cli).unwrap();
        assert_eq!(Settings::from_json(&json).unwrap(), cli);
    }

    #[test]
    fn layers_and_refusals() {
        let file =
            Settings::from_json(r#"{"port": 1, "max_batch_size": 4, "quantize": "w8a8"}"#).unwrap();
        let merged = flags(&["--port", "2", "--dtype", "f32"]).over(file);
        assert_eq!((merged.port, merged.max_batch_size), (Some(2), Some(4)));
        assert_eq!(merged.model.dtype, Some(Precision::F32));
        assert_eq!(
            merged.model.quantize,
            Some(crate::engine::Quantization::W8A8)
        );
        let e = Settings::from_json(r#"{"prot": 1, "max_batch_size": 4}"#).unwrap_err();
        assert!(e.contains("prot"), "{e}");
        assert!(Settings::from_json(r#"{"truncation": "middle"}"#).is_err());
        assert!(Settings::from_json("[1]").is_err());
    }
}
