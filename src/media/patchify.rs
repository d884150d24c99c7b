//! Rescale + normalise + flatten resized frames into the vision tower's patch rows.

use super::config::VisionConfig;

/// How the float value of a uint8 sample is computed; the two HF processors round differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// Slow image processor (numpy): `f32(x · rescale_factor)` in f64, then `(r − mean) / std` in f32.
    Numpy,
    /// Video processor (torch, fused): `(x − mean/rescale) / (std/rescale)` in f32.
    TorchFused,
}

/// Per-channel lookup table from a uint8 sample to its normalised value.
pub fn value_lut(cfg: &VisionConfig, norm: Normalization) -> [[f32; 256]; 3] {
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        let (mean, std) = (cfg.image_mean[c], cfg.image_std[c]);
        for (x, slot) in table.iter_mut().enumerate() {
            *slot = match (norm, cfg.do_rescale, cfg.do_normalize) {
                (Normalization::TorchFused, true, true) => {
                    let inv = 1.0 / cfg.rescale_factor;
                    let m = mean * inv as f32;
                    let s = std * inv as f32;
                    (x as f32 - m) / s
                }
                (_, rescale, normalize) => {
                    let r = if rescale {
                        (x as f64 * cfg.rescale_factor) as f32
                    } else {
                        x as f32
                    };
                    if normalize {
                        (r - mean) / std
                    } else {
                        r
                    }
                }
            };
        }
    }
    lut
}

/// Flattens `frames` (each a packed RGB8 image of `height × width`) into patch rows.
///
/// The frame count is padded to a multiple of `temporal_patch_size` by repeating the last frame.
/// Rows are ordered temporal slice → merge-window row → merge-window column → row in window →
/// column in window; each row holds channel → frame-in-slice → pixel row → pixel column
/// (the Conv3d weight layout). Returns the values and the grid `[t, h, w]` in patches.
pub fn patchify(
    frames: &[Vec<u8>],
    height: usize,
    width: usize,
    cfg: &VisionConfig,
    lut: &[[f32; 256]; 3],
) -> (Vec<f32>, [u32; 3]) {
    let p = cfg.patch_size as usize;
    let m = cfg.merge_size as usize;
    let tp = cfg.temporal_patch_size as usize;
    let gt = frames.len().div_ceil(tp);
    let (gh, gw) = (height / p, width / p);
    let row_len = 3 * tp * p * p;
    let mut out = vec![0f32; gt * gh * gw * row_len];
    if frames.is_empty() {
        return (out, [0, gh as u32, gw as u32]);
    }
    // One band = all rows of one temporal slice and one merge-window row: contiguous in `out`.
    let bands_per_slice = gh / m;
    super::par::for_each_chunk(&mut out, gw * m * row_len, |band, rows| {
        let (t, br) = (band / bands_per_slice, band % bands_per_slice);
        let mut rows = rows.chunks_exact_mut(row_len);
        for bc in 0..gw / m {
            for ir in 0..m {
                for ic in 0..m {
                    let Some(row) = rows.next() else { return };
                    let (y0, x0) = ((br * m + ir) * p, (bc * m + ic) * p);
                    let mut dst = row.chunks_exact_mut(p);
                    for (c, table) in lut.iter().enumerate() {
                        for tt in 0..tp {
                            // Past the last frame, the last frame repeats (temporal padding).
                            let f = &frames[(t * tp + tt).min(frames.len() - 1)];
                            for py in 0..p {
                                let start = ((y0 + py) * width + x0) * 3;
                                let src = &f[start..start + p * 3];
                                let Some(d) = dst.next() else { return };
                                for (v, px) in d.iter_mut().zip(src.chunks_exact(3)) {
                                    *v = table[px[c] as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
    (out, [gt as u32, gh as u32, gw as u32])
}
