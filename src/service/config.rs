//! Server settings: MindIE's `config.json` (ServerConfig / BackendConfig / ModelDeployConfig /
//! ScheduleConfig; read in `service::mindie_config`) and command-line flags, merged into one
//! [`ServiceConfig`].
//!
//! Every source produces a [`Settings`] whose fields are all optional; flags win over the file,
//! and whatever none gives takes MindIE's default (except that the CLI serves plain HTTP and
//! sizes the KV cache from free memory, so that `qwen3vl serve --model DIR` works on a laptop).

use std::path::PathBuf;
use std::time::Duration;

use super::settings::Settings;
use crate::engine::LoadOptions;
use crate::media::{MediaCaps, MediaLimits, MediaOverrides};
use crate::pipeline::{KvCacheSize, ScheduleConfig, SpeculativeConfig};

/// MindIE's hard-coded local media directory (`_ALLOWED_LOCAL_MEDIA_PATH`), our default root.
pub const DEFAULT_MEDIA_ROOT: &str = "/data/multimodal_inputs";

/// SplitFuse chunk when `templateType: "Mix"` gives no `splitChunkTokens`.
pub const DEFAULT_SPLIT_CHUNK: usize = 512;

/// Everything the server needs, resolved.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Checkpoint directory.
    pub model_dir: PathBuf,
    /// `tokenizer.json` when the checkpoint has none (random checkpoints).
    pub tokenizer: Option<PathBuf>,
    /// `modelName`: what `model` must say in OpenAI requests.
    pub served_model_name: String,
    /// Business listener (all endpoints).
    pub host: String,
    pub port: u16,
    /// Management / metrics listeners when configured apart from the business one; they serve
    /// the same routes (MindIE splits them; clients only care that the paths answer).
    pub extra_listeners: Vec<(String, u16)>,
    /// `maxLinkNum`: requests processed at once; twice as many wait, the rest get 503.
    pub max_link_num: usize,
    /// `maxRequestLength` in bytes: largest request body.
    pub max_request_bytes: usize,
    /// `tokenTimeout`: longest wait for the next token.
    pub token_timeout: Duration,
    /// `e2eTimeout`: longest request.
    pub e2e_timeout: Duration,
    /// `fullTextEnabled`: stream frames carry the whole text so far.
    pub full_text: bool,
    /// Certificate chain and private key (PEM) when serving HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub schedule: ScheduleConfig,
    pub kv_cache: KvCacheSize,
    /// `cacheBlockSize`.
    pub block_size: Option<usize>,
    pub media: MediaLimits,
    /// `--mm-processor-kwargs`: processor settings under every request's own.
    pub media_defaults: MediaOverrides,
    /// `--max-image-pixels` / `--max-video-frames`.
    pub media_caps: MediaCaps,
    /// Control-token text in user / tool content tokenized as plain text.
    pub escape_user_special_tokens: bool,
    /// `tokenizerProcessNumber`: requests preprocessed at once.
    pub media_workers: usize,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// Deadline for in-flight requests after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Whole request body read (the headers have actix-web's own 5 s limit).
    pub request_read_timeout: Duration,
    /// Weight precision and kernel backend.
    pub load: LoadOptions,
    /// `--speculative-config`: drafts verified in decode steps.
    pub speculative: Option<SpeculativeConfig>,
}

impl Settings {
    /// Apply defaults and check ranges.
    pub fn finish(self) -> Result<ServiceConfig, String> {
        let model_dir = self
            .model_dir
            .ok_or("no model: pass --model DIR or set ModelConfig[0].modelWeightPath")?;
        let in_range = |name: &str, v: u64, lo: u64, hi: u64| {
            if v < lo || v > hi {
                Err(format!("{name} = {v} is outside [{lo}, {hi}]"))
            } else {
                Ok(v)
            }
        };
        let host = std::env::var("MIES_CONTAINER_IP")
            .ok()
            .filter(|h| !h.is_empty())
            .or(self.host)
            .unwrap_or_else(|| "127.0.0.1".into());
        let all_zero = self.allow_all_zero_ip.unwrap_or(true);
        if (host == "0.0.0.0" || host == "::") && !all_zero {
            return Err(
                "ipAddress 0.0.0.0 needs allowAllZeroIpListening: true (MindIE's rule)".into(),
            );
        }
        let port = self.port.unwrap_or(1025);
        let mut extra = Vec::new();
        let mhost = self.management_host.unwrap_or_else(|| host.clone());
        for p in [self.management_port, self.metrics_port]
            .into_iter()
            .flatten()
        {
            let l = (mhost.clone(), p);
            if (l.0 != host || l.1 != port) && !extra.contains(&l) {
                extra.push(l);
            }
        }
        let max_link_num = in_range(
            "maxLinkNum",
            self.max_link_num.unwrap_or(1000) as u64,
            1,
            4096,
        )?;
        let mb = in_range(
            "maxRequestLength",
            self.max_request_mb.unwrap_or(40) as u64,
            1,
            100,
        )?;
        let token_timeout = in_range("tokenTimeout", self.token_timeout_s.unwrap_or(600), 1, 3600)?;
        let e2e_timeout = in_range("e2eTimeout", self.e2e_timeout_s.unwrap_or(600), 1, 65535)?;
        // HTTPS when asked for, or when a certificate and key are given without saying.
        let https = self
            .https
            .unwrap_or(self.tls_cert.is_some() && self.tls_key.is_some());
        let tls = if https {
            match (self.tls_cert, self.tls_key) {
                (Some(c), Some(k)) => Some((c, k)),
                _ => return Err("HTTPS needs both a certificate (tlsCert / --tls-cert) and a key (tlsPk / --tls-key); set httpsEnabled: false for plain HTTP".into()),
            }
        } else {
            None
        };
        let d = ScheduleConfig::default();
        let max_batch_size = self.max_batch_size.unwrap_or(d.max_batch_size);
        let max_seq_len = self.max_seq_len.unwrap_or(d.max_seq_len);
        let max_input_token_len = self.max_input_token_len.unwrap_or(d.max_input_token_len);
        let schedule = ScheduleConfig {
            max_batch_size,
            max_prefill_batch_size: self
                .max_prefill_batch_size
                .unwrap_or(d.max_prefill_batch_size)
                .min(max_batch_size),
            // MindIE requires maxPrefillTokens ≥ maxInputTokenLen; raise the default to fit.
            max_prefill_tokens: self.max_prefill_tokens.unwrap_or(
                d.max_prefill_tokens
                    .max(max_input_token_len.min(max_seq_len)),
            ),
            max_seq_len,
            max_input_token_len,
            max_iter_times: self.max_iter_times.unwrap_or(d.max_iter_times),
            truncation: self.truncation.unwrap_or_default(),
            prefill_chunk: self.prefill_chunk.unwrap_or(d.prefill_chunk),
        };
        let kv_cache = match self.kv_cache_gib {
            Some(g) if g > 0.0 => KvCacheSize::Gib(g),
            _ => KvCacheSize::FreeMemoryFraction(0.5),
        };
        let d_media = MediaLimits::default();
        let media = MediaLimits {
            media_root: Some(
                self.media_root
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_MEDIA_ROOT)),
            ),
            allow_http: self.allow_http_media.unwrap_or(true),
            max_item_bytes: mb << 20,
            max_items: self.max_media_items.unwrap_or(20),
            rgba_background: self.rgba_background.unwrap_or_default(),
            allowed_media_domains: self.allowed_media_domains.clone().unwrap_or_default(),
            http_connect_timeout: secs(self.media_connect_timeout_s, d_media.http_connect_timeout)?,
            http_read_timeout: secs(self.media_read_timeout_s, d_media.http_read_timeout)?,
            http_timeout: secs(self.media_fetch_timeout_s, d_media.http_timeout)?,
            media_deadline: secs(self.media_deadline_s, d_media.media_deadline)?,
            ..d_media
        };
        let media_caps = MediaCaps {
            max_image_pixels: self.max_image_pixels,
            max_video_frames: self.max_video_frames,
        };
        if media_caps.max_image_pixels == Some(0) || media_caps.max_video_frames == Some(0) {
            return Err("--max-image-pixels and --max-video-frames must be positive".into());
        }
        let media_defaults = match &self.mm_processor_kwargs {
            None => MediaOverrides::default(),
            Some(v) => MediaOverrides::from_json(v, "--mm-processor-kwargs")
                .map_err(|e| format!("invalid {}: {}", e.field, e.message))?,
        };
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let served_model_name = self.served_model_name.unwrap_or_else(|| "qwen3vl".into());
        if served_model_name.is_empty() || served_model_name.len() > 256 {
            return Err("the served model name must be 1–256 characters".into());
        }
        Ok(ServiceConfig {
            model_dir,
            tokenizer: self.tokenizer,
            served_model_name,
            host,
            port,
            extra_listeners: extra,
            max_link_num: max_link_num as usize,
            max_request_bytes: (mb as usize) << 20,
            token_timeout: Duration::from_secs(token_timeout),
            e2e_timeout: Duration::from_secs(e2e_timeout),
            full_text: self.full_text.unwrap_or(false),
            tls,
            schedule,
            kv_cache,
            block_size: self.block_size,
            media,
            media_defaults,
            media_caps,
            escape_user_special_tokens: self.escape_user_special_tokens.unwrap_or(false),
            media_workers: self.media_workers.unwrap_or(cores.clamp(1, 8)),
            http_workers: self.http_workers.unwrap_or(cores.clamp(1, 4)),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_s.unwrap_or(30)),
            request_read_timeout: secs(self.request_read_timeout_s, Duration::from_secs(30))?,
            load: self.model.load_options(),
            speculative: match &self.speculative_config {
                None => None,
                Some(v) => Some(
                    SpeculativeConfig::from_json(v)
                        .map_err(|e| format!("invalid --speculative-config: {e}"))?,
                ),
            },
        })
    }
}

/// A positive number of seconds from a setting, or the default.
fn secs(v: Option<f64>, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s < 1e6 => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(format!("timeouts must be positive seconds, got {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Truncation;
    use std::path::Path;

    const SHIPPED: &str = r#"{
      "Version": "1.0.0",
      "ServerConfig": {
        "ipAddress": "127.0.0.1", "managementIpAddress": "127.0.0.2",
        "port": 1025, "managementPort": 1026, "metricsPort": 1027,
        "allowAllZeroIpListening": false, "maxLinkNum": 1000,
        "httpsEnabled": false, "fullTextEnabled": false,
        "tlsCaPath": "security/ca/", "tlsCaFile": ["ca.pem"], "tlsCert": "security/certs/server.pem", "tlsPk": "security/keys/server.key.pem",
        "inferMode": "standard", "interCommTLSEnabled": true, "interCommPort": 1121,
        "openAiSupport": "vllm", "tokenTimeout": 600, "e2eTimeout": 600,
        "distDPServerEnabled": false,
        "HealthCheckConfig": { "npuUsageThreshold": 0 }
      },
      "BackendConfig": {
        "backendName": "mindieservice_llm_engine", "modelInstanceNumber": 1,
        "npuDeviceIds": [[0,1,2,3]], "tokenizerProcessNumber": 8,
        "multiNodesInferEnabled": false, "multiNodesInferPort": 1120,
        "ModelDeployConfig": {
          "maxSeqLen": 10240, "maxInputTokenLen": 10240, "truncation": false,
          "ModelConfig": [{
            "modelInstanceType": "Standard", "modelName": "qwen3vl",
            "modelWeightPath": "/data_mm/weights/Qwen3-VL-8B-Instruct",
            "worldSize": 2, "cpuMemSize": 0, "npuMemSize": 3, "backendType": "atb",
            "trustRemoteCode": false
          }]
        },
        "ScheduleConfig": {
          "templateType": "Standard", "templateName": "Standard_LLM", "cacheBlockSize": 128,
          "maxPrefillBatchSize": 50, "maxPrefillTokens": 8192, "prefillTimeMsPerReq": 150, "prefillPolicyType": 0,
          "decodeTimeMsPerReq": 50, "decodePolicyType": 0,
          "maxBatchSize": 200, "maxIterTimes": 512, "maxPreemptCount": 0, "supportSelectBatch": false,
          "maxQueueDelayMicroseconds": 5000, "maxFirstTokenWaitTime": 2500
        }
      },
      "LogConfig": { "dynamicLogLevel": "" },
      "EnableDynamicAdjustTimeoutConfig": false
    }"#;

    #[test]
    fn reads_the_qwen3vl_readme_config() {
        let (s, note) = Settings::from_mindie_json(SHIPPED, Path::new("/etc/mindie")).unwrap();
        assert_eq!(s.served_model_name.as_deref(), Some("qwen3vl"));
        assert_eq!(s.port, Some(1025));
        assert_eq!(s.max_seq_len, Some(10240));
        assert_eq!(s.truncation, Some(Truncation::Error));
        assert_eq!(s.kv_cache_gib, Some(3.0));
        assert_eq!(
            s.tls_cert,
            Some(PathBuf::from("/etc/mindie/security/certs/server.pem"))
        );
        let note = note.unwrap();
        for f in [
            "npuDeviceIds",
            "worldSize",
            "maxQueueDelayMicroseconds",
            "interCommPort",
            "LogConfig",
        ] {
            assert!(note.contains(f), "{f} not reported in {note}");
        }
        let c = s.finish().unwrap();
        assert_eq!(c.schedule.max_prefill_tokens, 8192);
        assert_eq!(c.schedule.max_input_token_len, 10240);
        assert!(c.tls.is_none());
        assert_eq!(
            c.extra_listeners,
            vec![("127.0.0.2".into(), 1026), ("127.0.0.2".into(), 1027)]
        );
        assert_eq!(c.max_request_bytes, 40 << 20);
        assert_eq!(c.schedule.prefill_chunk, 0);
        let mix = SHIPPED.replace(
            "\"templateType\": \"Standard\"",
            "\"templateType\": \"Mix\"",
        );
        let (s, _) = Settings::from_mindie_json(&mix, Path::new("/")).unwrap();
        assert_eq!(s.prefill_chunk, Some(DEFAULT_SPLIT_CHUNK));
    }

    #[test]
    fn flags_win_and_types_are_checked() {
        let (file, _) = Settings::from_mindie_json(SHIPPED, Path::new("/")).unwrap();
        let cli = Settings {
            port: Some(8080),
            model_dir: Some("/m".into()),
            ..Default::default()
        };
        let c = cli.over(file).finish().unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.model_dir, PathBuf::from("/m"));
        let bad = SHIPPED.replace("\"maxLinkNum\": 1000", "\"maxLinkNum\": \"many\"");
        assert!(Settings::from_mindie_json(&bad, Path::new("/")).is_err());
        let https = SHIPPED.replace("\"httpsEnabled\": false", "\"httpsEnabled\": true");
        let (s, _) = Settings::from_mindie_json(&https, Path::new("/")).unwrap();
        assert!(s.finish().unwrap().tls.is_some());
        let zero = SHIPPED.replace("\"127.0.0.1\"", "\"0.0.0.0\"");
        let (s, _) = Settings::from_mindie_json(&zero, Path::new("/")).unwrap();
        assert!(s.finish().is_err());
    }

    #[test]
    fn cli_defaults_work_without_a_file() {
        let c = Settings {
            model_dir: Some("/m".into()),
            ..Default::default()
        }
        .finish()
        .unwrap();
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 1025));
        assert!(c.tls.is_none());
        assert_eq!(c.max_link_num, 1000);
        assert_eq!(c.served_model_name, "qwen3vl");
    }

    /// MindIE's parallel-decoding plugins: memory decoding maps to the engine's drafter (its
    /// `decoding_length` checked against `speculationGamma`), lookahead is refused at startup
    /// with the reason, and a malformed `plugin_params` names the field.
    #[test]
    fn plugin_params_map_to_speculative_decoding() {
        let with = |params: &str, gamma: &str| {
            SHIPPED
                .replace(
                    "\"trustRemoteCode\": false",
                    &format!("\"trustRemoteCode\": false, \"plugin_params\": {params:?}"),
                )
                .replace(
                    "\"maxSeqLen\": 10240,",
                    &format!("\"maxSeqLen\": 10240, \"speculationGamma\": {gamma},"),
                )
        };
        let md = r#"{"plugin_type":"memory_decoding","decoding_length":8,"dynamic_algo":true}"#;
        let (s, _) = Settings::from_mindie_json(&with(md, "16"), Path::new("/")).unwrap();
        let c = s.finish().unwrap();
        assert_eq!(c.speculative.as_ref().map(|s| s.max_draft()), Some(8));
        let (s, _) = Settings::from_mindie_json(&with(md, "4"), Path::new("/")).unwrap();
        assert!(s.finish().unwrap_err().contains("speculationGamma"));
        let la = r#"{"plugin_type":"la","level":4,"window":5,"guess_set_size":5}"#;
        let (s, _) = Settings::from_mindie_json(&with(la, "64"), Path::new("/")).unwrap();
        assert!(s.finish().unwrap_err().contains("not supported"));
        let e = Settings::from_mindie_json(&with("{oops", "16"), Path::new("/")).unwrap_err();
        assert!(e.contains("plugin_params"), "{e}");
    }
}
