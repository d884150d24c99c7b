//! Rotary embeddings: interleaved 3-D M-RoPE for the text decoder and 2-D (row, col) RoPE for the
//! vision tower.

use super::kernels::bf16::Precision;
use super::kernels::ops::rotate_half;

/// transformers' `rope_type` with its parameters (`ROPE_INIT_FUNCTIONS`): how the inverse
/// frequencies are derived, and the scale applied to cos/sin (`attention_scaling`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeKind {
    Default,
    /// Every frequency divided by `factor`.
    Linear {
        factor: f64,
    },
    /// YaRN: per-frequency blend of interpolated and original frequencies, cos/sin scaled.
    Yarn {
        factor: f64,
        attention_factor: Option<f64>,
        mscale: Option<f64>,
        mscale_all_dim: Option<f64>,
        beta_fast: f64,
        beta_slow: f64,
        original_max_position_embeddings: f64,
        truncate: bool,
    },
    /// Llama 3: low frequencies divided by `factor`, a smooth blend in between.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
}

/// `1 / base^(2j/d)` as PyTorch evaluates it in f32 (the pow is correctly rounded for these
/// inputs, so f64 then rounding gives its value).
fn default_inv_freq(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|j| {
            let e = ((2 * j) as f32 / head_dim as f32) as f64;
            1.0f32 / theta.powf(e) as f32
        })
        .collect()
}

/// `_compute_yarn_parameters` (f32 tensors, Python-float scalars as PyTorch mixes them).
#[allow(clippy::too_many_arguments)]
fn yarn_inv_freq(
    head_dim: usize,
    theta: f64,
    factor: f64,
    beta_fast: f64,
    beta_slow: f64,
    original_max: f64,
    truncate: bool,
) -> Vec<f32> {
    let dim = head_dim as f64;
    let pos_freqs: Vec<f32> = (0..head_dim / 2)
        .map(|j| theta.powf(((2 * j) as f32 / head_dim as f32) as f64) as f32)
        .collect();
    let correction_dim = |rot: f64| {
        (dim * (original_max / (rot * 2.0 * std::f64::consts::PI)).ln()) / (2.0 * theta.ln())
    };
    let (mut low, mut high) = (correction_dim(beta_fast), correction_dim(beta_slow));
    if truncate {
        low = low.floor();
        high = high.ceil();
    }
    let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
    if low == high {
        high += 0.001; // transformers' guard against a zero-width ramp
    }
    let (min32, span32) = (low as f32, (high - low) as f32);
    let factor32 = factor as f32;
    pos_freqs
        .iter()
        .enumerate()
        .map(|(j, &p)| {
            let extrapolation = 1.0f32 / p;
            let interpolation = 1.0f32 / (factor32 * p);
            let ramp = ((j as f32 - min32) / span32).clamp(0.0, 1.0);
            let extrapolation_factor = 1.0f32 - ramp;
            interpolation * (1.0 - extrapolation_factor) + extrapolation * extrapolation_factor
        })
        .collect()
}

/// YaRN's cos/sin scale when `attention_factor` is not given.
fn yarn_attention_factor(factor: f64, mscale: Option<f64>, mscale_all_dim: Option<f64>) -> f64 {
    let get_mscale = |scale: f64, m: f64| {
        if scale <= 1.0 {
            1.0
        } else {
            0.1 * m * scale.ln() + 1.0
        }
    };
    match (mscale, mscale_all_dim) {
        // Python truthiness: 0 counts as absent.
        (Some(m), Some(a)) if m != 0.0 && a != 0.0 => get_mscale(factor, m) / get_mscale(factor, a),
        _ => get_mscale(factor, 1.0),
    }
}

/// `_compute_llama3_parameters`.
fn llama3_inv_freq(
    head_dim: usize,
    theta: f64,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max: f64,
) -> Vec<f32> {
    let low_wavelen = original_max / low_freq_factor;
    let high_wavelen = original_max / high_freq_factor;
    let f32s = |x: f64| x as f32;
    default_inv_freq(head_dim, theta)
        .into_iter()
        .map(|f| {
            // `2π / t` is `reciprocal(t) · 2π` in PyTorch.
            let wavelen = (1.0f32 / f) * f32s(2.0 * std::f64::consts::PI);
            let scaled = if wavelen > f32s(low_wavelen) {
                f / f32s(factor)
            } else {
                f
            };
            let smooth = ((1.0f32 / wavelen) * f32s(original_max) - f32s(low_freq_factor))
                / f32s(high_freq_factor - low_freq_factor);
            let smoothed = (1.0 - smooth) * scaled / f32s(factor) + smooth * scaled;
            // transformers: `~(wavelen < high) * ~(wavelen > low)`; wavelengths are finite.
            let medium = wavelen >= f32s(high_wavelen) && wavelen <= f32s(low_wavelen);
            if medium {
                smoothed
            } else {
                scaled
            }
        })
        .collect()
}

/// Text M-RoPE tables for a set of (t, h, w) positions.
pub struct TextRope {
    inv_freq: Vec<f32>,
    /// transformers' `attention_scaling`: cos and sin are multiplied by it (1 but for YaRN).
    scale: f32,
    /// For each frequency slot j < head_dim/2: which stream (0 = T, 1 = H, 2 = W) supplies it.
    slot_stream: Vec<usize>,
    head_dim: usize,
}

impl TextRope {
    /// `section` is `mrope_section`; `kind` derives the frequencies (`rope_type`).
    ///
    /// The layout is always interleaved, as in transformers 4.57's `apply_interleaved_mrope`
    /// (it ignores `mrope_interleaved`): slot j ≡ 1 (mod 3) takes H and j ≡ 2 (mod 3) takes W
    /// for j below `3·section[1]` and `3·section[2]` respectively, every other slot T. Python's
    /// slice `offset:3·s:3` stops at the end of the head_dim/2 slots, so a section whose 3·s
    /// exceeds head_dim/2 is clipped there; `section[0]` is never read.
    pub fn new(head_dim: usize, theta: f64, section: &[usize], kind: &RopeKind) -> Self {
        let half = head_dim / 2;
        let (inv_freq, scale) = match *kind {
            RopeKind::Default => (default_inv_freq(head_dim, theta), 1.0),
            // One more f32 division, as in transformers.
            RopeKind::Linear { factor } => (
                default_inv_freq(head_dim, theta)
                    .into_iter()
                    .map(|f| f / factor as f32)
                    .collect(),
                1.0,
            ),
            RopeKind::Yarn {
                factor,
                attention_factor,
                mscale,
                mscale_all_dim,
                beta_fast,
                beta_slow,
                original_max_position_embeddings,
                truncate,
            } => (
                yarn_inv_freq(
                    head_dim,
                    theta,
                    factor,
                    beta_fast,
                    beta_slow,
                    original_max_position_embeddings,
                    truncate,
                ),
                attention_factor
                    .unwrap_or_else(|| yarn_attention_factor(factor, mscale, mscale_all_dim)),
            ),
            RopeKind::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => (
                llama3_inv_freq(
                    head_dim,
                    theta,
                    factor,
                    low_freq_factor,
                    high_freq_factor,
                    original_max_position_embeddings,
                ),
                1.0,
            ),
        };
        let mut slot_stream = vec![0usize; half];
        for (dim, offset) in [(1usize, 1usize), (2, 2)] {
            let end = (section.get(dim).copied().unwrap_or(0) * 3).min(half);
            let mut j = offset;
            while j < end {
                slot_stream[j] = dim;
                j += 3;
            }
        }
        TextRope {
            inv_freq,
            scale: scale as f32,
            slot_stream,
            head_dim,
        }
    }

    /// cos/sin [n, head_dim] for positions given as three streams (each length n), rounded to
    /// the activation precision as PyTorch does before applying them.
    pub fn tables(&self, pos: [&[i64]; 3], p: Precision) -> (Vec<f32>, Vec<f32>) {
        let n = pos[0].len();
        let hd = self.head_dim;
        let half = hd / 2;
        let mut cos = vec![0f32; n * hd];
        let mut sin = vec![0f32; n * hd];
        for i in 0..n {
            for j in 0..half {
                let stream = self.slot_stream[j];
                let angle = pos[stream][i] as f32 * self.inv_freq[j];
                let (s, c) = angle.sin_cos();
                let (c, s) = (p.round(c * self.scale), p.round(s * self.scale));
                cos[i * hd + j] = c;
                cos[i * hd + j + half] = c;
                sin[i * hd + j] = s;
                sin[i * hd + j + half] = s;
            }
        }
        (cos, sin)
    }
}

/// How a rotation is rounded: PyTorch's text path works on bf16 tensors (every product and the
/// sum rounded), the vision path upcasts q/k to f32 and rounds only the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeRounding {
    EachOp,
    Once,
}

/// Apply rotate-half RoPE in place to `x` ([n, heads, hd]) with per-token tables [n, hd].
#[allow(clippy::too_many_arguments)]
pub fn apply_rope(
    x: &mut [f32],
    n: usize,
    heads: usize,
    hd: usize,
    cos: &[f32],
    sin: &[f32],
    p: Precision,
    rounding: RopeRounding,
) {
    for i in 0..n {
        let (c, s) = (&cos[i * hd..(i + 1) * hd], &sin[i * hd..(i + 1) * hd]);
        for v in x[i * heads * hd..(i + 1) * heads * hd].chunks_exact_mut(hd) {
            rotate_half(v, c, s, p, rounding == RopeRounding::EachOp);
        }
    }
}

/// Vision 2-D rotary tables for patches at (row, col): angles [row·f_0.., col·f_0..] duplicated
/// to the full head dim, in f32.
pub fn vision_tables(head_dim: usize, coords: &[(usize, usize)]) -> (Vec<f32>, Vec<f32>) {
    let quarter = head_dim / 4;
    let dim = head_dim / 2;
    // inv_freq = 1 / 10000^(2k/dim), k < dim/2.
    let inv_freq: Vec<f32> = (0..quarter)
        .map(|k| {
            let e = ((2 * k) as f32 / dim as f32) as f64;
            1.0f32 / (10000f64.powf(e) as f32)
        })
        .collect();
    let n = coords.len();
    let mut cos = vec![0f32; n * head_dim];
    let mut sin = vec![0f32; n * head_dim];
    for (i, &(r, c)) in coords.iter().enumerate() {
        for (k, &f) in inv_freq.iter().enumerate() {
            for (slot, pos) in [(k, r), (quarter + k, c)] {
                let angle = pos as f32 * f;
                let (s, co) = angle.sin_cos();
                cos[i * head_dim + slot] = co;
                cos[i * head_dim + slot + dim] = co;
                sin[i * head_dim + slot] = s;
                sin[i * head_dim + slot + dim] = s;
            }
        }
    }
    (cos, sin)
}
