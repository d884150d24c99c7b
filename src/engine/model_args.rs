//! The model flags every subcommand that loads a model shares — `--dtype`, `--backend`,
//! `--quantize`, `--threads` — as one clap + serde type, flattened into each subcommand's
//! arguments and into the server's [`Settings`](crate::service::Settings). Unset fields take the
//! defaults of [`LoadOptions`] and of the kernel plan.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::kernels::runtime::caps::CpuCaps;
use super::kernels::runtime::env::PlanEnv;
use super::kernels::runtime::plan::{self, KernelPlan, PlanRequest, Resolved};
use super::{BackendChoice, LoadOptions, Precision, Quantization};

#[derive(clap::Args, Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelArgs {
    /// Compute precision: bf16 (default), f16 or f32.
    #[arg(long)]
    #[serde(with = "as_text")]
    pub dtype: Option<Precision>,
    /// Kernel backend: auto (default), portable, onednn, fma, dot or amx.
    #[arg(long)]
    #[serde(with = "as_text")]
    pub backend: Option<BackendChoice>,
    /// Quantize on load: none (default), w8a8 or w8a8-vision.
    #[arg(long)]
    #[serde(with = "as_text")]
    pub quantize: Option<Quantization>,
    /// Compute threads (default: one per core this process may run on; `QWEN3VL_THREADS` also
    /// sets it, the flag wins).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
    /// Pin each compute worker thread to one CPU of the process's affinity set (`--pin-threads`
    /// or `--pin-threads false`; `QWEN3VL_PIN_THREADS=1` also sets it). Off by default.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub pin_threads: Option<bool>,
}

impl ModelArgs {
    /// `self` where set, else `lower`.
    pub fn over(self, lower: ModelArgs) -> ModelArgs {
        ModelArgs {
            dtype: self.dtype.or(lower.dtype),
            backend: self.backend.or(lower.backend),
            quantize: self.quantize.or(lower.quantize),
            threads: self.threads.or(lower.threads),
            pin_threads: self.pin_threads.or(lower.pin_threads),
        }
    }

    /// How to load the model.
    pub fn load_options(&self) -> LoadOptions {
        let d = LoadOptions::default();
        LoadOptions {
            precision: self.dtype.unwrap_or(d.precision),
            backend: self.backend.unwrap_or(d.backend),
            quantization: self.quantize.unwrap_or(d.quantization),
        }
    }

    /// The plan these flags and the environment resolve to on this machine, for `--backend`
    /// (a model resolves its own plan from its backend when it loads).
    pub fn resolve(&self) -> super::Result<Resolved> {
        let request = PlanRequest {
            backend: self.backend.unwrap_or_default(),
            threads: self.threads.map(usize::from),
            pin_threads: self.pin_threads,
        };
        KernelPlan::resolve(CpuCaps::detect(), &request, PlanEnv::process())
    }

    /// Resolves the automatic plan under these flags and makes it the process plan. Call it
    /// before anything computes: the compute pool and oneDNN take their thread count from the
    /// process plan when first used.
    pub fn install(&self) -> super::Result<&'static Resolved> {
        let wanted = ModelArgs {
            backend: None,
            ..*self
        }
        .resolve()?;
        let threads = wanted.plan.threads;
        let installed = plan::install(wanted);
        if installed.plan.threads != threads {
            return Err(super::EngineError::Kernel(format!(
                "a kernel plan with {} threads was in force before the flags were read",
                installed.plan.threads
            )));
        }
        Ok(installed)
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Precision::parse(s).ok_or_else(|| format!("unknown dtype `{s}` (f32, bf16 or f16)"))
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl BackendChoice {
    /// The `--backend` spelling.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Portable => "portable",
            BackendChoice::OneDnn => "onednn",
            BackendChoice::Fma => "fma",
            BackendChoice::Dot => "dot",
            BackendChoice::Amx => "amx",
        }
    }
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use BackendChoice::*;
        [Auto, Portable, OneDnn, Fma, Dot, Amx]
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}` (auto, portable, onednn, fma, dot, amx)"))
    }
}

impl fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Quantization {
    /// The `--quantize` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::W8A8 => "w8a8",
            Quantization::W8A8Vision => "w8a8-vision",
        }
    }
}

impl FromStr for Quantization {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [
            Quantization::None,
            Quantization::W8A8,
            Quantization::W8A8Vision,
        ]
        .into_iter()
        .find(|q| q.name() == s)
        .ok_or_else(|| format!("unknown quantization `{s}` (none, w8a8, w8a8-vision)"))
    }
}

impl fmt::Display for Quantization {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serde for an optional value spelled as its flag is (`Display` / `FromStr`), so a settings
/// file says `"dtype": "bf16"` exactly as the command line does.
pub(crate) mod as_text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips() {
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        use BackendChoice::*;
        for b in [Auto, Portable, OneDnn, Fma, Dot, Amx] {
            assert_eq!(b.to_string().parse::<BackendChoice>(), Ok(b));
        }
        for q in [
            Quantization::None,
            Quantization::W8A8,
            Quantization::W8A8Vision,
        ] {
            assert_eq!(q.to_string().parse::<Quantization>(), Ok(q));
        }
        assert!("bf17".parse::<Precision>().is_err());
        let a = ModelArgs {
            dtype: Some(Precision::F16),
            quantize: Some(Quantization::W8A8),
            ..Default::default()
        };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(
            json,
            r#"{"dtype":"f16","backend":null,"quantize":"w8a8","threads":null,"pin_threads":null}"#
        );
        assert_eq!(serde_json::from_str::<ModelArgs>(&json).unwrap(), a);
        assert!(serde_json::from_str::<ModelArgs>(r#"{"dtype":"f8"}"#).is_err());
    }
}
