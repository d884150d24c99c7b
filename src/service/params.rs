//! Request bodies shared by several routes: JSON reading (any content type, as curl's `-d`
//! sends form-encoded), the vLLM/OpenAI sampling fields and the TGI/MindIE `parameters`
//! object, each validated with MindIE's ranges (`infer_param.cpp`) into [`SamplingParams`].
//! Unknown fields are ignored; a known field of the wrong type is a 422.

use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::errors::ApiError;
use super::state::AppState;
use crate::media::MediaOverrides;
use crate::pipeline::SamplingParams;
use crate::prompt::ContentPart;

/// MindIE's limits on stop strings (`MAX_STOP_STRING_LEN`, `MAX_TOTAL_STOP`).
const MAX_STOP_LEN: usize = 1024;
const MAX_STOP_TOTAL: usize = 32 * 1024;

/// The raw request body, at most `maxRequestLength` bytes (413 with MindIE's error body
/// beyond). Read whatever the content type says: curl's `-d` sends JSON as form data.
pub struct Body(pub Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let state = req.app_data::<Data<AppState>>();
        let limit = state.map_or(40 << 20, |s| s.config.max_request_bytes);
        let read_timeout = state.map_or(std::time::Duration::from_secs(30), |s| {
            s.config.request_read_timeout
        });
        let too_large = move || {
            ApiError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than maxRequestLength ({limit} bytes)"),
            )
        };
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            // The headers have their own 5 s limit (actix-web's client_request_timeout); this
            // bounds the body, so a client that stops half-way cannot hold the connection.
            let read = async {
                let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk
                        .map_err(|e| ApiError::validation(format!("reading the body: {e}")))?;
                    if buf.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(Body(buf.freeze()))
            };
            match actix_web::rt::time::timeout(read_timeout, read).await {
                Ok(r) => r,
                Err(_) => Err(ApiError::new(
                    actix_web::http::StatusCode::REQUEST_TIMEOUT,
                    format!("the request body was not received within {read_timeout:?}"),
                )),
            }
        })
    }
}

/// Parse a JSON body into `T`. MindIE's own README shows bodies with a full-width comma `，`
/// between array items (typed on a Chinese keyboard); as a courtesy such punctuation outside
/// strings is read as its ASCII twin when the strict parse fails. Type errors name the field.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    from_value(&parse_json(body)?)
}

/// The body as JSON (see [`parse_body`]).
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::validation("the request body is not UTF-8"))?;
    if text.trim().is_empty() {
        return Err(ApiError::validation("the request body is empty"));
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) => Ok(v),
        Err(e) => {
            let fixed = ascii_punctuation_outside_strings(text);
            if fixed != text {
                if let Ok(v) = serde_json::from_str::<Value>(&fixed) {
                    return Ok(v);
                }
            }
            Err(ApiError::validation(format!("invalid JSON body: {e}")))
        }
    }
}

/// Deserialize a request (or a part of it); unknown fields are ignored, wrong types name the
/// offending field.
/// The request's `mm_processor_kwargs` (vLLM): a bad value is a 422 naming the field.
pub fn media_overrides(v: Option<&Value>) -> Result<MediaOverrides, ApiError> {
    match v {
        None => Ok(MediaOverrides::default()),
        Some(v) => MediaOverrides::from_json(v, "mm_processor_kwargs")
            .map_err(|e| ApiError::validation(format!("invalid `{}`: {}", e.field, e.message))),
    }
}

pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::validation(format!("invalid request: {}", e.inner()))
        } else {
            ApiError::validation(format!("invalid `{path}`: {}", e.inner()))
        }
    })
}

fn ascii_punctuation_outside_strings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_str, mut escaped) = (false, false);
    for c in text.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            out.push(c);
            continue;
        }
        match c {
            '"' => {
                in_str = true;
                out.push(c)
            }
            '，' => out.push(','),
            '：' => out.push(':'),
            '\u{3000}' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// `"stop"`: one string or a list.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum StopList {
    One(String),
    Many(Vec<String>),
}

impl StopList {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            StopList::One(s) => vec![s],
            StopList::Many(v) => v,
        }
    }
}

/// A vLLM `prompt` / TGI `inputs`: a string or a list of typed parts.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TextOrParts {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl TextOrParts {
    /// The first text item (what MindIE echoes in front of `/generate` output).
    pub fn first_text(&self) -> &str {
        match self {
            TextOrParts::Text(t) => t,
            TextOrParts::Parts(p) => p
                .iter()
                .find_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .unwrap_or(""),
        }
    }
}

fn range<T: PartialOrd + Copy + std::fmt::Display>(
    name: &str,
    v: Option<T>,
    ok: impl Fn(T) -> bool,
    desc: &str,
) -> Result<Option<T>, ApiError> {
    match v {
        Some(x) if !ok(x) => Err(ApiError::validation(format!(
            "`{name}` = {x} is out of range {desc}"
        ))),
        _ => Ok(v),
    }
}

fn check_stops(stops: &[String]) -> Result<(), ApiError> {
    let mut total = 0;
    for s in stops {
        if s.is_empty() || s.chars().count() > MAX_STOP_LEN {
            return Err(ApiError::validation(format!(
                "each stop string must have 1–{MAX_STOP_LEN} characters"
            )));
        }
        total += s.chars().count();
    }
    if total > MAX_STOP_TOTAL {
        return Err(ApiError::validation(format!(
            "stop strings total {total} characters, above {MAX_STOP_TOTAL}"
        )));
    }
    Ok(())
}

fn seed(v: Option<u64>) -> Result<Option<u64>, ApiError> {
    range("seed", v, |s| s <= i64::MAX as u64, "[0, 2^63 - 1]")
}

/// Sampling fields of `/generate` (vLLM), `/v1/chat/completions` and `/v1/completions`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct VllmSampling {
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<u64>,
    pub repetition_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub stop: Option<StopList>,
    pub stop_token_ids: Option<Vec<u32>>,
    pub include_stop_str_in_output: Option<bool>,
    pub ignore_eos: Option<bool>,
    pub skip_special_tokens: Option<bool>,
    pub max_tokens: Option<i64>,
    pub n: Option<i64>,
    pub best_of: Option<i64>,
    pub use_beam_search: Option<bool>,
    /// `false`: no speculative drafts for this request (qwen3vl's own field).
    pub speculative: Option<bool>,
}

impl VllmSampling {
    /// Validate into engine parameters. `max_repetition` is 2.0 on the OpenAI routes and
    /// unbounded on `/generate`, as in MindIE.
    pub fn to_params(&self, max_repetition: f32) -> Result<SamplingParams, ApiError> {
        let temperature = range(
            "temperature",
            self.temperature,
            |t| t >= 0.0 && t.is_finite(),
            "[0, ∞)",
        )?;
        let top_k = range(
            "top_k",
            self.top_k,
            |k| k == -1 || (0..=i32::MAX as i64).contains(&k),
            "-1 or [0, 2^31 - 1]",
        )?;
        let top_p = range("top_p", self.top_p, |p| p > 0.0 && p <= 1.0, "(0, 1]")?;
        let min_p = range("min_p", self.min_p, |p| (0.0..=1.0).contains(&p), "[0, 1]")?;
        let rep = range(
            "repetition_penalty",
            self.repetition_penalty,
            |r| r > 0.0 && r <= max_repetition,
            if max_repetition <= 2.0 {
                "(0, 2]"
            } else {
                "(0, ∞)"
            },
        )?;
        let pres = range(
            "presence_penalty",
            self.presence_penalty,
            |p| (-2.0..=2.0).contains(&p),
            "[-2, 2]",
        )?;
        let freq = range(
            "frequency_penalty",
            self.frequency_penalty,
            |p| (-2.0..=2.0).contains(&p),
            "[-2, 2]",
        )?;
        let max_tokens = range(
            "max_tokens",
            self.max_tokens,
            |m| m > 0 && m <= i32::MAX as i64,
            "[1, 2^31 - 1]",
        )?;
        let n = range("n", self.n, |n| (1..=128).contains(&n), "[1, 128]")?;
        let best_of = range(
            "best_of",
            self.best_of,
            |b| (1..=128).contains(&b),
            "[1, 128]",
        )?;
        if let (Some(b), n) = (best_of, n.unwrap_or(1)) {
            if b < n {
                return Err(ApiError::validation(format!(
                    "best_of ({b}) must be ≥ n ({n})"
                )));
            }
        }
        if self.use_beam_search == Some(true) {
            return Err(ApiError::validation("use_beam_search is not supported"));
        }
        let stop = self
            .stop
            .clone()
            .map(StopList::into_vec)
            .unwrap_or_default();
        check_stops(&stop)?;
        Ok(SamplingParams {
            temperature,
            top_k: top_k.map(|k| k.max(0) as i32),
            top_p,
            min_p,
            repetition_penalty: rep,
            presence_penalty: pres,
            frequency_penalty: freq,
            seed: seed(self.seed)?,
            stop,
            stop_token_ids: self.stop_token_ids.clone().unwrap_or_default(),
            include_stop_str_in_output: self.include_stop_str_in_output.unwrap_or(false),
            ignore_eos: self.ignore_eos.unwrap_or(false),
            max_tokens: max_tokens.map(|m| m as usize),
            n: n.map(|n| n as usize),
            skip_special_tokens: self.skip_special_tokens,
            speculative: self.speculative,
            ..Default::default()
        })
    }
}

/// The `parameters` object of TGI (`/generate` with `inputs`, `/generate_stream`, `/`) and of
/// MindIE's `/infer`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(default)]
pub struct TgiParameters {
    pub best_of: Option<i64>,
    pub decoder_input_details: Option<bool>,
    pub details: Option<bool>,
    pub do_sample: Option<bool>,
    pub max_new_tokens: Option<i64>,
    pub repetition_penalty: Option<f32>,
    pub return_full_text: Option<bool>,
    pub seed: Option<u64>,
    pub temperature: Option<f32>,
    pub top_k: Option<i64>,
    pub top_p: Option<f32>,
    pub typical_p: Option<f32>,
    pub truncate: Option<i64>,
    pub stop: Option<Vec<String>>,
    pub watermark: Option<bool>,
    pub adapter_id: Option<String>,
    pub priority: Option<i64>,
    pub timeout: Option<i64>,
}

/// MindIE's `MAX_NEW_TOKENS_DFT`.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 20;

impl TgiParameters {
    pub fn details(&self) -> bool {
        self.details.unwrap_or(false)
    }

    pub fn to_params(&self) -> Result<SamplingParams, ApiError> {
        let temperature = range(
            "temperature",
            self.temperature,
            |t| t > 0.0 && t.is_finite(),
            "(0, ∞)",
        )?;
        let top_k = range(
            "top_k",
            self.top_k,
            |k| k > 0 && k <= i32::MAX as i64,
            "(0, 2^31 - 1]",
        )?;
        let top_p = range("top_p", self.top_p, |p| p > 0.0 && p <= 1.0, "(0, 1]")?;
        range(
            "typical_p",
            self.typical_p,
            |p| p > 0.0 && p <= 1.0,
            "(0, 1]",
        )?;
        let rep = range(
            "repetition_penalty",
            self.repetition_penalty,
            |r| r > 0.0 && r.is_finite(),
            "(0, ∞)",
        )?;
        let max_new = range(
            "max_new_tokens",
            self.max_new_tokens,
            |m| m > 0 && m <= i32::MAX as i64,
            "[1, 2^31 - 1]",
        )?;
        range(
            "priority",
            self.priority,
            |p| (1..=5).contains(&p),
            "[1, 5]",
        )?;
        range(
            "timeout",
            self.timeout,
            |t| t > 0 && t <= 65535,
            "(0, 65535]",
        )?;
        range("truncate", self.truncate, |t| t > 0, "[1, ∞)")?;
        let stop = self.stop.clone().unwrap_or_default();
        if stop.len() > 1024 {
            return Err(ApiError::validation("at most 1024 stop sequences"));
        }
        check_stops(&stop)?;
        // do_sample = false asks for greedy decoding whatever the temperature says.
        let temperature = match self.do_sample {
            Some(false) => Some(0.0),
            _ => temperature,
        };
        Ok(SamplingParams {
            temperature,
            top_k: top_k.map(|k| k as i32),
            top_p,
            repetition_penalty: rep,
            seed: seed(self.seed)?,
            stop,
            max_tokens: Some(max_new.map_or(DEFAULT_MAX_NEW_TOKENS, |m| m as usize)),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_commas_outside_strings_are_read() {
        let body = "{\"prompt\": [{\"type\": \"text\", \"text\": \"描述，这张图片\"}，{\"type\": \"text\", \"text\": \"b\"}]}";
        let v: Value = parse_body(body.as_bytes()).unwrap();
        assert_eq!(v["prompt"][0]["text"], "描述，这张图片");
        assert_eq!(v["prompt"][1]["text"], "b");
        assert!(parse_body::<Value>(b"{oops").is_err());
    }

    #[test]
    fn ranges_and_types() {
        let s: VllmSampling =
            parse_body(br#"{"temperature": 1, "top_k": -1, "stop": "x", "unknown": 3}"#).unwrap();
        let p = s.to_params(2.0).unwrap();
        assert_eq!(
            (p.temperature, p.top_k, p.stop),
            (Some(1.0), Some(0), vec!["x".to_string()])
        );
        let s: VllmSampling = parse_body(br#"{"repetition_penalty": 2.5}"#).unwrap();
        assert!(s.to_params(2.0).is_err());
        assert!(s.to_params(f32::MAX).is_ok());
        assert!(parse_body::<VllmSampling>(br#"{"temperature": "hot"}"#).is_err());
        let t: TgiParameters = parse_body(br#"{"temperature": 0}"#).unwrap();
        assert!(t.to_params().is_err());
        let t: TgiParameters = parse_body(br#"{"do_sample": false}"#).unwrap();
        let p = t.to_params().unwrap();
        assert_eq!((p.temperature, p.max_tokens), (Some(0.0), Some(20)));
    }

    #[test]
    fn speculative_opt_out_reaches_the_engine() {
        let s: VllmSampling = parse_body(br#"{"speculative": false}"#).unwrap();
        assert_eq!(s.to_params(2.0).unwrap().speculative, Some(false));
        let s: VllmSampling = parse_body(br#"{}"#).unwrap();
        assert_eq!(s.to_params(2.0).unwrap().speculative, None);
        assert!(parse_body::<VllmSampling>(br#"{"speculative": "no"}"#).is_err());
    }
}
