//! bf16 helpers. In bf16 mode activations live in f32 buffers but hold only bf16-representable
//! values: every place where PyTorch rounds a bf16 tensor, we round too.

use half::bf16;

#[inline]
pub fn round_bf16(x: f32) -> f32 {
    bf16::from_f32(x).to_f32()
}

/// Round a whole buffer to bf16 precision (round-to-nearest-even).
pub fn round_slice(xs: &mut [f32]) {
    for x in xs {
        *x = round_bf16(*x);
    }
}

/// The activation precision a model runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 weights and activations (reference mode).
    F32,
    /// bf16 weights, bf16-rounded activations, fp32 accumulation (the default).
    Bf16,
}

impl Precision {
    #[inline]
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::F32 => x,
            Precision::Bf16 => round_bf16(x),
        }
    }

    pub fn round_slice(self, xs: &mut [f32]) {
        if self == Precision::Bf16 {
            round_slice(xs);
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Some(Precision::F32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }
}
