//! Sampling parameters of a request (OpenAI / vLLM names), the checkpoint's defaults from
//! `generation_config.json`, and validation into a [`ResolvedSampling`].

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::rng::random_seed;

/// What a request asks for; `None` falls back to the checkpoint's generation defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 = greedy.
    pub temperature: Option<f32>,
    /// ≤ 0 disables.
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    /// HF-style: logits of tokens seen in the prompt or output are divided (if > 0) or
    /// multiplied (if < 0) by this.
    pub repetition_penalty: Option<f32>,
    /// vLLM-style, over output tokens: −presence once per distinct token.
    pub presence_penalty: Option<f32>,
    /// vLLM-style, over output tokens: −frequency × count.
    pub frequency_penalty: Option<f32>,
    /// Same seed → same output. A random seed is drawn when absent.
    pub seed: Option<u64>,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub include_stop_str_in_output: bool,
    pub ignore_eos: bool,
    /// Defaults to the engine's `maxIterTimes`.
    pub max_tokens: Option<usize>,
    /// Independent completions of the same prompt (they share its cached blocks).
    pub n: Option<usize>,
    /// Return the log-probability of each sampled token.
    pub logprobs: bool,
    /// Also the `top_logprobs` most likely tokens (0..=20).
    pub top_logprobs: usize,
    /// Drop special tokens from the text (default true).
    pub skip_special_tokens: Option<bool>,
    /// `false`: this request never drafts, even where the server runs speculative decoding
    /// (a draft costs compute that a latency-sensitive or batch-heavy client may not want).
    /// Absent or `true`: as the server is configured (there is no opting in).
    pub speculative: Option<bool>,
}

impl SamplingParams {
    /// Greedy decoding (temperature 0), everything else default.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: Some(0.0),
            ..Default::default()
        }
    }

    pub fn with_max_tokens(mut self, n: usize) -> Self {
        self.max_tokens = Some(n);
        self
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error("`{name}` = {value} is out of range {range}")]
    OutOfRange {
        name: &'static str,
        value: String,
        range: &'static str,
    },
    #[error("n = {0} needs sampling (temperature > 0); greedy decoding gives n identical outputs")]
    GreedyN(usize),
    #[error("invalid generation_config.json {path}: {msg}")]
    Defaults { path: String, msg: String },
}

/// `generation_config.json` of the checkpoint (Qwen3-VL Instruct: temperature 0.7, top_k 20,
/// top_p 0.8, eos [151645, 151643]).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationDefaults {
    pub eos_token_ids: Vec<u32>,
    pub do_sample: bool,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub repetition_penalty: f32,
}

impl Default for GenerationDefaults {
    fn default() -> Self {
        GenerationDefaults {
            eos_token_ids: Vec::new(),
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
        }
    }
}

#[derive(Deserialize)]
struct GenConfigFile {
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    do_sample: Option<bool>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_k: Option<i32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    repetition_penalty: Option<f32>,
}

impl GenerationDefaults {
    /// Read `generation_config.json`; when absent, greedy with `fallback_eos`.
    pub fn from_model_dir(dir: &Path, fallback_eos: &[u32]) -> Result<Self, SamplingError> {
        let path = dir.join("generation_config.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(GenerationDefaults {
                eos_token_ids: fallback_eos.to_vec(),
                ..Default::default()
            });
        };
        let err = |msg: String| SamplingError::Defaults {
            path: path.display().to_string(),
            msg,
        };
        let f: GenConfigFile = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        let eos = match f.eos_token_id {
            None => fallback_eos.to_vec(),
            Some(v) => serde_json::from_value::<Vec<u32>>(v.clone())
                .or_else(|_| serde_json::from_value::<u32>(v).map(|x| vec![x]))
                .map_err(|e| err(format!("eos_token_id: {e}")))?,
        };
        let d = GenerationDefaults::default();
        Ok(GenerationDefaults {
            eos_token_ids: eos,
            do_sample: f.do_sample.unwrap_or(d.do_sample),
            temperature: f.temperature.unwrap_or(d.temperature),
            top_k: f.top_k.unwrap_or(d.top_k),
            top_p: f.top_p.unwrap_or(d.top_p),
            repetition_penalty: f.repetition_penalty.unwrap_or(d.repetition_penalty),
        })
    }
}

/// Validated, defaulted sampling settings of one sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSampling {
    pub greedy: bool,
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    pub top_p: f32,
    pub min_p: f32,
    pub repetition_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub seed: u64,
    /// None = no logprobs; Some(k) = the sampled token's plus the top k.
    pub logprobs: Option<usize>,
}

fn check(name: &'static str, v: f32, ok: bool, range: &'static str) -> Result<(), SamplingError> {
    if ok && v.is_finite() {
        Ok(())
    } else {
        Err(SamplingError::OutOfRange {
            name,
            value: v.to_string(),
            range,
        })
    }
}

impl SamplingParams {
    /// Fill defaults and validate (ranges of MindIE's OpenAI endpoint).
    pub fn resolve(&self, d: &GenerationDefaults) -> Result<ResolvedSampling, SamplingError> {
        let temperature = self
            .temperature
            .unwrap_or(if d.do_sample { d.temperature } else { 0.0 });
        check("temperature", temperature, temperature >= 0.0, "[0, ∞)")?;
        let top_k = self.top_k.unwrap_or(d.top_k);
        let top_p = self.top_p.unwrap_or(d.top_p);
        check("top_p", top_p, top_p > 0.0 && top_p <= 1.0, "(0, 1]")?;
        let min_p = self.min_p.unwrap_or(0.0);
        check("min_p", min_p, (0.0..=1.0).contains(&min_p), "[0, 1]")?;
        let rep = self.repetition_penalty.unwrap_or(d.repetition_penalty);
        check("repetition_penalty", rep, rep > 0.0, "(0, ∞)")?;
        let pres = self.presence_penalty.unwrap_or(0.0);
        check(
            "presence_penalty",
            pres,
            (-2.0..=2.0).contains(&pres),
            "[-2, 2]",
        )?;
        let freq = self.frequency_penalty.unwrap_or(0.0);
        check(
            "frequency_penalty",
            freq,
            (-2.0..=2.0).contains(&freq),
            "[-2, 2]",
        )?;
        if self.top_logprobs > 20 {
            return Err(SamplingError::OutOfRange {
                name: "top_logprobs",
                value: self.top_logprobs.to_string(),
                range: "[0, 20]",
            });
        }
        let n = self.n.unwrap_or(1);
        if n == 0 || n > 128 {
            return Err(SamplingError::OutOfRange {
                name: "n",
                value: n.to_string(),
                range: "[1, 128]",
            });
        }
        let greedy = temperature == 0.0;
        if greedy && n > 1 {
            return Err(SamplingError::GreedyN(n));
        }
        Ok(ResolvedSampling {
            greedy,
            temperature,
            top_k: top_k.max(0) as usize,
            top_p,
            min_p,
            repetition_penalty: rep,
            presence_penalty: pres,
            frequency_penalty: freq,
            seed: self.seed.unwrap_or_else(random_seed),
            logprobs: (self.logprobs || self.top_logprobs > 0).then_some(self.top_logprobs),
        })
    }
}
