//! 3-D position ids for M-RoPE (`get_rope_index` of transformers' Qwen3-VL).

use super::error::{EngineError, Result};

/// Token ids that structure a multimodal prompt.
#[derive(Debug, Clone, Copy)]
pub struct VisionTokens {
    pub image: u32,
    pub video: u32,
    pub vision_start: u32,
}

/// Position streams (t, h, w), each one entry per prompt token, plus the decode offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionIds {
    pub streams: [Vec<i64>; 3],
    /// Decode positions are `cache_index + rope_delta` on all three streams.
    pub rope_delta: i64,
}

impl PositionIds {
    pub fn len(&self) -> usize {
        self.streams[0].len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn as_refs(&self) -> [&[i64]; 3] {
        [&self.streams[0], &self.streams[1], &self.streams[2]]
    }
}

/// Compute position ids for a prompt. `image_grids` / `video_grids` are (t, h, w) in patch units;
/// a video of t temporal slices is t consecutive items of grid (1, h, w), one per
/// `<|vision_start|><|video_pad|>…` block. The pad counts are checked against the grids.
pub fn rope_index(
    ids: &[u32],
    tokens: VisionTokens,
    image_grids: &[[usize; 3]],
    video_grids: &[[usize; 3]],
    merge: usize,
) -> Result<PositionIds> {
    let videos: Vec<[usize; 3]> = video_grids
        .iter()
        .flat_map(|&[t, h, w]| std::iter::repeat_n([1, h, w], t))
        .collect();
    let mut items = Vec::new(); // (is_image, grid)
    for (i, &id) in ids.iter().enumerate() {
        if id == tokens.vision_start {
            match ids.get(i + 1) {
                Some(&n) if n == tokens.image => items.push(true),
                Some(&n) if n == tokens.video => items.push(false),
                _ => {}
            }
        }
    }
    let n_img = items.iter().filter(|&&x| x).count();
    let n_vid = items.len() - n_img;
    if n_img != image_grids.len() {
        return Err(EngineError::input(format!(
            "prompt has {n_img} image blocks but {} image grids were given",
            image_grids.len()
        )));
    }
    if n_vid != videos.len() {
        return Err(EngineError::input(format!(
            "prompt has {n_vid} video blocks but the video grids describe {} temporal slices",
            videos.len()
        )));
    }
    let mut streams: [Vec<i64>; 3] = [Vec::with_capacity(ids.len()), Vec::new(), Vec::new()];
    streams[1].reserve(ids.len());
    streams[2].reserve(ids.len());
    let push = |s: &mut [Vec<i64>; 3], t: i64, h: i64, w: i64| {
        s[0].push(t);
        s[1].push(h);
        s[2].push(w);
    };
    let find = |tok: u32, from: usize| ids[from..].iter().position(|&x| x == tok).map(|p| p + from);
    let (mut st, mut next_pos) = (0usize, 0i64);
    let (mut ii, mut vi) = (0usize, 0usize);
    for _ in 0..items.len() {
        let ed_img = if ii < image_grids.len() {
            find(tokens.image, st)
        } else {
            None
        };
        let ed_vid = if vi < videos.len() {
            find(tokens.video, st)
        } else {
            None
        };
        let (ed, grid, kind) = match (ed_img, ed_vid) {
            (Some(a), Some(b)) if a < b => (a, image_grids[ii], "image"),
            (Some(a), None) => (a, image_grids[ii], "image"),
            (_, Some(b)) => (b, videos[vi], "video"),
            (None, None) => {
                return Err(EngineError::input("vision block without pad tokens"));
            }
        };
        if kind == "image" {
            ii += 1;
        } else {
            vi += 1;
        }
        let [t, h, w] = grid;
        if h % merge != 0 || w % merge != 0 || t == 0 {
            return Err(EngineError::input(format!(
                "{kind} grid {grid:?} is not divisible by the merge size {merge}"
            )));
        }
        let (lt, lh, lw) = (t, h / merge, w / merge);
        let n_tokens = lt * lh * lw;
        let pad = if kind == "image" {
            tokens.image
        } else {
            tokens.video
        };
        if ed + n_tokens > ids.len() || ids[ed..ed + n_tokens].iter().any(|&x| x != pad) {
            return Err(EngineError::input(format!(
                "{kind} grid {grid:?} needs {n_tokens} consecutive pad tokens at position {ed}"
            )));
        }
        for p in st..ed {
            let v = next_pos + (p - st) as i64;
            push(&mut streams, v, v, v);
        }
        let base = next_pos + (ed - st) as i64;
        for ti in 0..lt {
            for r in 0..lh {
                for c in 0..lw {
                    push(
                        &mut streams,
                        base + ti as i64,
                        base + r as i64,
                        base + c as i64,
                    );
                }
            }
        }
        next_pos = base + lt.max(lh).max(lw) as i64;
        st = ed + n_tokens;
    }
    for p in st..ids.len() {
        let v = next_pos + (p - st) as i64;
        push(&mut streams, v, v, v);
    }
    let total_pads = ids
        .iter()
        .filter(|&&x| x == tokens.image || x == tokens.video)
        .count();
    let expected: usize = image_grids
        .iter()
        .chain(videos.iter())
        .map(|[t, h, w]| t * (h / merge) * (w / merge))
        .sum();
    if total_pads != expected {
        return Err(EngineError::input(format!(
            "prompt has {total_pads} image/video pad tokens but the grids need {expected}"
        )));
    }
    let max = streams
        .iter()
        .flat_map(|s| s.iter())
        .copied()
        .max()
        .unwrap_or(-1);
    Ok(PositionIds {
        rope_delta: max + 1 - ids.len() as i64,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: VisionTokens = VisionTokens {
        image: 9,
        video: 8,
        vision_start: 7,
    };

    #[test]
    fn text_only_is_arange() {
        let p = rope_index(&[1, 2, 3], T, &[], &[], 2).unwrap();
        assert_eq!(p.streams[0], vec![0, 1, 2]);
        assert_eq!(p.rope_delta, 0);
    }

    #[test]
    fn image_block_positions() {
        // text, start, 2x3 merged image (grid 1,4,6), end, text
        let mut ids = vec![1, 7];
        ids.extend(std::iter::repeat_n(9, 6));
        ids.extend([6, 1]);
        let p = rope_index(&ids, T, &[[1, 4, 6]], &[], 2).unwrap();
        assert_eq!(&p.streams[0][..3], &[0, 1, 2]);
        assert_eq!(&p.streams[1][2..8], &[2, 2, 2, 3, 3, 3]);
        assert_eq!(&p.streams[2][2..8], &[2, 3, 4, 2, 3, 4]);
        // after the block: 2 + max(0, 1, 2) + 1 = 5
        assert_eq!(p.streams[0][8], 5);
        assert_eq!(p.rope_delta, 7 - 10);
    }

    #[test]
    fn mismatched_counts_are_errors() {
        let ids = vec![7, 9, 9, 1];
        assert!(rope_index(&ids, T, &[[1, 4, 6]], &[], 2).is_err());
        assert!(rope_index(&ids, T, &[], &[], 2).is_err());
    }
}
