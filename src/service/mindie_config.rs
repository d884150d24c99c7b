//! MindIE Service's `config.json` → [`Settings`]: every field this server understands is
//! type-checked; valid MindIE fields without meaning on a CPU (device ids, world size,
//! inter-node TLS, …) are collected and reported in one log line rather than rejected, so
//! that an existing MindIE deployment's file works unchanged.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::config::DEFAULT_SPLIT_CHUNK;
use super::settings::Settings;
use crate::pipeline::Truncation;

impl Settings {
    /// Read MindIE's `config.json`. Relative paths resolve against the file's folder. Returns
    /// the settings and one note listing the fields accepted but ignored.
    pub fn from_mindie_file(path: &Path) -> Result<(Settings, Option<String>), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_mindie_json(&text, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_mindie_json(text: &str, base: &Path) -> Result<(Settings, Option<String>), String> {
        let root: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut r = Reader {
            ignored: Vec::new(),
            base: base.to_path_buf(),
        };
        let mut s = Settings::default();
        let top = r.object(&root, "")?;
        for (k, _) in top {
            if !["ServerConfig", "BackendConfig"].contains(&k.as_str()) {
                r.ignored.push(k.clone());
            }
        }
        if let Some(sc) = top.get("ServerConfig") {
            r.server(r.object(sc, "ServerConfig")?, &mut s)?;
        }
        if let Some(bc) = top.get("BackendConfig") {
            r.backend(r.object(bc, "BackendConfig")?, &mut s)?;
        }
        let note = (!r.ignored.is_empty()).then(|| {
            format!(
                "config.json: accepted and ignored (no meaning for this CPU server): {}",
                r.ignored.join(", ")
            )
        });
        Ok((s, note))
    }
}

/// Walks the JSON, type-checking every field it knows and collecting the ones it ignores.
struct Reader {
    ignored: Vec<String>,
    base: PathBuf,
}

/// ServerConfig / BackendConfig / … fields that are valid MindIE settings but mean nothing here.
const IGNORED_SERVER: &[&str] = &[
    "inferMode",
    "interCommTLSEnabled",
    "interCommPort",
    "interCommTlsCaPath",
    "interCommTlsCaFiles",
    "interCommTlsCert",
    "interCommPk",
    "interCommTlsCrlPath",
    "interCommTlsCrlFiles",
    "openAiSupport",
    "distDPServerEnabled",
    "HealthCheckConfig",
    "tlsCaPath",
    "tlsCaFile",
    "tlsCrlPath",
    "tlsCrlFiles",
    "managementTlsCaFile",
    "managementTlsCert",
    "managementTlsPk",
    "managementTlsCrlPath",
    "managementTlsCrlFiles",
    "metricsTlsCaFile",
    "metricsTlsCert",
    "metricsTlsPk",
    "metricsTlsCrlPath",
    "metricsTlsCrlFiles",
    "layerwiseDisaggregated",
];

impl Reader {
    fn object<'a>(&self, v: &'a Value, name: &str) -> Result<&'a Map<String, Value>, String> {
        v.as_object()
            .ok_or_else(|| format!("{name} must be an object"))
    }

    fn uint(&self, o: &Map<String, Value>, sec: &str, key: &str) -> Result<Option<u64>, String> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{sec}.{key} must be a non-negative integer, got {v}")),
        }
    }

    fn usize(&self, o: &Map<String, Value>, sec: &str, key: &str) -> Result<Option<usize>, String> {
        Ok(self.uint(o, sec, key)?.map(|v| v as usize))
    }

    fn boolean(
        &self,
        o: &Map<String, Value>,
        sec: &str,
        key: &str,
    ) -> Result<Option<bool>, String> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(format!("{sec}.{key} must be true or false, got {v}")),
        }
    }

    fn string(
        &self,
        o: &Map<String, Value>,
        sec: &str,
        key: &str,
    ) -> Result<Option<String>, String> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(format!("{sec}.{key} must be a string, got {v}")),
        }
    }

    fn path(
        &self,
        o: &Map<String, Value>,
        sec: &str,
        key: &str,
    ) -> Result<Option<PathBuf>, String> {
        Ok(self.string(o, sec, key)?.map(|s| self.base.join(s)))
    }

    fn port(&self, o: &Map<String, Value>, sec: &str, key: &str) -> Result<Option<u16>, String> {
        match self.uint(o, sec, key)? {
            None => Ok(None),
            Some(p) if (1024..=65535).contains(&p) => Ok(Some(p as u16)),
            Some(p) => Err(format!("{sec}.{key} = {p} is outside [1024, 65535]")),
        }
    }

    /// Records every key of `o` not in `known` as ignored.
    fn rest(&mut self, o: &Map<String, Value>, sec: &str, known: &[&str]) {
        for k in o.keys() {
            if !known.contains(&k.as_str()) {
                self.ignored.push(format!("{sec}.{k}"));
            }
        }
    }

    fn server(&mut self, o: &Map<String, Value>, s: &mut Settings) -> Result<(), String> {
        let sec = "ServerConfig";
        s.host = self.string(o, sec, "ipAddress")?;
        s.management_host = self.string(o, sec, "managementIpAddress")?;
        s.port = self.port(o, sec, "port")?;
        s.management_port = self.port(o, sec, "managementPort")?;
        s.metrics_port = self.port(o, sec, "metricsPort")?;
        s.allow_all_zero_ip = self.boolean(o, sec, "allowAllZeroIpListening")?;
        s.max_link_num = self.usize(o, sec, "maxLinkNum")?;
        s.https = self.boolean(o, sec, "httpsEnabled")?;
        s.full_text = self.boolean(o, sec, "fullTextEnabled")?;
        s.tls_cert = self.path(o, sec, "tlsCert")?;
        s.tls_key = self.path(o, sec, "tlsPk")?;
        s.token_timeout_s = self.uint(o, sec, "tokenTimeout")?;
        s.e2e_timeout_s = self.uint(o, sec, "e2eTimeout")?;
        s.max_request_mb = self.usize(o, sec, "maxRequestLength")?;
        if let Some(v) = self.string(o, sec, "openAiSupport")? {
            if v != "vllm" {
                tracing::warn!("config.json: openAiSupport \"{v}\" — only the vLLM-compatible chat flavour is implemented; using it");
            }
        }
        let known = [
            "ipAddress",
            "managementIpAddress",
            "port",
            "managementPort",
            "metricsPort",
            "allowAllZeroIpListening",
            "maxLinkNum",
            "httpsEnabled",
            "fullTextEnabled",
            "tlsCert",
            "tlsPk",
            "tokenTimeout",
            "e2eTimeout",
            "maxRequestLength",
        ];
        let all: Vec<&str> = known.iter().chain(IGNORED_SERVER).copied().collect();
        for k in o.keys() {
            if IGNORED_SERVER.contains(&k.as_str()) {
                self.ignored.push(format!("{sec}.{k}"));
            }
        }
        self.rest(o, sec, &all);
        Ok(())
    }

    fn backend(&mut self, o: &Map<String, Value>, s: &mut Settings) -> Result<(), String> {
        let sec = "BackendConfig";
        s.media_workers = self.usize(o, sec, "tokenizerProcessNumber")?;
        self.rest(
            o,
            sec,
            &[
                "tokenizerProcessNumber",
                "ModelDeployConfig",
                "ScheduleConfig",
            ],
        );
        if let Some(md) = o.get("ModelDeployConfig") {
            let md = self.object(md, "ModelDeployConfig")?;
            let sec = "ModelDeployConfig";
            s.max_seq_len = self.usize(md, sec, "maxSeqLen")?;
            s.max_input_token_len = self.usize(md, sec, "maxInputTokenLen")?;
            s.truncation = match md.get("truncation") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(false)) => Some(Truncation::Error),
                Some(Value::Bool(true)) => Some(Truncation::Right),
                Some(v) => match v.as_i64() {
                    Some(0) => Some(Truncation::Error),
                    Some(-1) => Some(Truncation::Right),
                    Some(1) => Some(Truncation::Left),
                    _ => {
                        return Err(format!(
                            "{sec}.truncation must be 0, 1, -1 or a bool, got {v}"
                        ))
                    }
                },
            };
            let gamma = match md.get("speculationGamma") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    format!("{sec}.speculationGamma must be an integer, got {v}")
                })?),
            };
            self.rest(
                md,
                sec,
                &[
                    "maxSeqLen",
                    "maxInputTokenLen",
                    "truncation",
                    "ModelConfig",
                    "speculationGamma",
                ],
            );
            if let Some(mc) = md.get("ModelConfig") {
                let list = mc
                    .as_array()
                    .ok_or("ModelDeployConfig.ModelConfig must be a list")?;
                if list.len() > 1 {
                    self.ignored
                        .push("ModelConfig[1..] (one model per server)".into());
                }
                if let Some(m) = list.first() {
                    let m = self.object(m, "ModelConfig[0]")?;
                    let sec = "ModelConfig[0]";
                    s.served_model_name = self.string(m, sec, "modelName")?;
                    s.model_dir = self.path(m, sec, "modelWeightPath")?;
                    s.kv_cache_gib = match m.get("npuMemSize") {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(v.as_f64().ok_or_else(|| {
                            format!("{sec}.npuMemSize must be a number, got {v}")
                        })?),
                    };
                    s.speculative_config = plugin_params(m, sec, gamma)?;
                    self.rest(
                        m,
                        sec,
                        &["modelName", "modelWeightPath", "npuMemSize", "plugin_params"],
                    );
                }
            }
        }
        if let Some(sc) = o.get("ScheduleConfig") {
            let sc = self.object(sc, "ScheduleConfig")?;
            let sec = "ScheduleConfig";
            s.block_size = self.usize(sc, sec, "cacheBlockSize")?;
            s.max_prefill_batch_size = self.usize(sc, sec, "maxPrefillBatchSize")?;
            s.max_prefill_tokens = self.usize(sc, sec, "maxPrefillTokens")?;
            s.max_batch_size = self.usize(sc, sec, "maxBatchSize")?;
            s.max_iter_times = self.usize(sc, sec, "maxIterTimes")?;
            // templateType "Mix" is MindIE's SplitFuse: prompts prefill in chunks of
            // splitChunkTokens (default here 512) alongside decode steps.
            let chunk = self.usize(sc, sec, "splitChunkTokens")?;
            s.prefill_chunk = match self.string(sc, sec, "templateType")?.as_deref() {
                None | Some("Standard") => None,
                Some("Mix") => Some(chunk.unwrap_or(DEFAULT_SPLIT_CHUNK).max(1)),
                Some(other) => {
                    return Err(format!(
                        "{sec}.templateType must be \"Standard\" or \"Mix\", got \"{other}\""
                    ))
                }
            };
            self.rest(
                sc,
                sec,
                &[
                    "cacheBlockSize",
                    "maxPrefillBatchSize",
                    "maxPrefillTokens",
                    "maxBatchSize",
                    "maxIterTimes",
                    "templateType",
                    "splitChunkTokens",
                ],
            );
        }
        Ok(())
    }
}

/// `ModelConfig[0].plugin_params` (a JSON *string*, as MindIE has it) with
/// `ModelDeployConfig.speculationGamma`, as the settings' `speculative_config` (checked when the
/// settings are finished: an unknown plugin or a gamma below the draft is a startup error).
fn plugin_params(
    m: &Map<String, Value>,
    sec: &str,
    gamma: Option<i64>,
) -> Result<Option<Value>, String> {
    let text = match m.get("plugin_params") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) if t.trim().is_empty() => return Ok(None),
        Some(Value::String(t)) => t,
        Some(v) => return Err(format!("{sec}.plugin_params must be a JSON string, got {v}")),
    };
    let p: Value = serde_json::from_str(text)
        .map_err(|e| format!("{sec}.plugin_params is not JSON: {e}"))?;
    let Some(p) = p.as_object() else {
        return Err(format!("{sec}.plugin_params must hold a JSON object"));
    };
    let mut out = Map::new();
    for (k, v) in p {
        let key = if k == "plugin_type" { "method" } else { k.as_str() };
        out.insert(key.to_string(), v.clone());
    }
    if !out.contains_key("method") {
        return Err(format!("{sec}.plugin_params has no plugin_type"));
    }
    if let Some(g) = gamma {
        out.insert("speculation_gamma".into(), Value::from(g));
    }
    Ok(Some(Value::Object(out)))
}
