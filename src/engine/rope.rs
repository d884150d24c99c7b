//! Rotary embeddings: interleaved 3-D M-RoPE for the text decoder and 2-D (row, col) RoPE for the
//! vision tower.

use super::kernels::bf16::Precision;
use super::kernels::ops::rotate_half;

/// Text M-RoPE tables for a set of (t, h, w) positions.
pub struct TextRope {
    inv_freq: Vec<f32>,
    /// For each frequency slot j < head_dim/2: which stream (0 = T, 1 = H, 2 = W) supplies it.
    slot_stream: Vec<usize>,
    head_dim: usize,
}

impl TextRope {
    /// `section` is `mrope_section`; `linear_factor` divides every frequency (`rope_type: linear`,
    /// 1 otherwise).
    ///
    /// The layout is always interleaved, as in transformers 4.57's `apply_interleaved_mrope`
    /// (it ignores `mrope_interleaved`): slot j ≡ 1 (mod 3) takes H and j ≡ 2 (mod 3) takes W
    /// for j below 3·section[1] and 3·section[2] respectively, every other slot T. Python's
    /// slice `offset:3·s:3` stops at the end of the head_dim/2 slots, so a section whose 3·s
    /// exceeds head_dim/2 is clipped there; section[0] is never read.
    pub fn new(head_dim: usize, theta: f64, section: &[usize], linear_factor: f64) -> Self {
        let half = head_dim / 2;
        let factor = linear_factor as f32;
        // inv_freq = 1 / theta^(2j/d), evaluated in f32 by PyTorch; f64 then rounding gives the
        // correctly rounded value, which is what PyTorch's pow returns for these inputs. The
        // linear scaling is one more f32 division, as in transformers.
        let inv_freq: Vec<f32> = (0..half)
            .map(|j| {
                let e = ((2 * j) as f32 / head_dim as f32) as f64;
                let pow = theta.powf(e) as f32;
                let f = 1.0f32 / pow;
                if factor == 1.0 {
                    f
                } else {
                    f / factor
                }
            })
            .collect();
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
                let (c, s) = (p.round(c), p.round(s));
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
