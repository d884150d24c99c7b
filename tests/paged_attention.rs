//! Paged attention equals contiguous attention: the same logits, bit for bit, for prefill and
//! decode across block boundaries (block size 4, shuffled physical blocks), and for a sequence
//! that reuses another one's cached prefix blocks and computes only its suffix.

mod common;

use common::*;
use qwen3vl::engine::model::{argmax, StepInput, VisualSpan};
use qwen3vl::engine::paged::KvBlocks;
use qwen3vl::engine::{BackendChoice, MultimodalInput, Precision, Qwen3VlModel};

const BS: usize = 4;

fn features(
    model: &Qwen3VlModel,
    input: &MultimodalInput,
) -> Option<qwen3vl::engine::model::VisualFeatures> {
    let enc = |px: &[f32], grids: &[[usize; 3]]| {
        let mut at = 0;
        let pd = model.config.patch_dim();
        let items: Vec<(&[f32], [usize; 3])> = grids
            .iter()
            .map(|g| {
                let n = g[0] * g[1] * g[2] * pd;
                at += n;
                (&px[at - n..at], *g)
            })
            .collect();
        model.encode_items(&items).unwrap()
    };
    if input.image_grid_thw.is_empty() && input.video_grid_thw.is_empty() {
        return None;
    }
    let images = enc(&input.pixel_values, &input.image_grid_thw);
    let videos = enc(&input.pixel_values_videos, &input.video_grid_thw);
    Some(
        model
            .visual_features(&input.input_ids, &images, &videos)
            .unwrap(),
    )
}

/// Paged prefill of tokens [start, len) of `ids` (earlier ones already cached in `blocks`).
#[allow(clippy::too_many_arguments)]
fn paged_step(
    model: &Qwen3VlModel,
    kv: &mut KvBlocks,
    blocks: &[u32],
    ids: &[u32],
    pos: &[Vec<i64>; 3],
    start: usize,
    feat: Option<&qwen3vl::engine::model::VisualFeatures>,
) -> Vec<f32> {
    let before = ids[..start]
        .iter()
        .filter(|&&t| model.is_visual_token(t))
        .count();
    let input = StepInput {
        tokens: &ids[start..],
        start,
        positions: [&pos[0][start..], &pos[1][start..], &pos[2][start..]],
        blocks,
        visual: feat.map(|features| VisualSpan {
            features,
            first: before,
            prompt_rows: usize::MAX,
        }),
        logits: 1,
    };
    model.step(kv, &[input]).unwrap()
}

/// oneDNN's AVX-512 / AMX matmuls and the FMA kernel over bf16 panels compute every row of a
/// matmul independently of the others; the portable GEMM's (and oneDNN's AVX2 GEMM's) results
/// depend, in the last f32 bits, on how many rows a call has. The prefix-hit check runs fewer rows
/// than the reference prefill, so it is exact on a row-invariant backend and within a tolerance
/// otherwise. (Same-shape comparisons are exact either way: the attention kernel is.)
fn check(model_name: &str, precision: Precision, dtype: &str) {
    let exact = row_invariant_backend(precision);
    let backend = exact.unwrap_or(BackendChoice::Portable);
    let model = load(model_name, precision, backend);
    let v = model.vocab_size();
    for c in CASES {
        let input = case(model_name, c, dtype).input;
        let n = input.input_ids.len();
        let positions = model.positions(&input).unwrap();
        let feat = features(&model, &input);
        // Contiguous reference: prefill + 6 decode steps.
        let mut cache = model.new_cache();
        let first = model.prefill(&mut cache, &input, false).unwrap();
        let mut want = vec![first.logits.clone()];
        let mut toks = vec![argmax(&first.logits) as u32];
        for _ in 0..6 {
            let l = model
                .decode(&mut cache, *toks.last().unwrap(), positions.rope_delta)
                .unwrap();
            toks.push(argmax(&l) as u32);
            want.push(l);
        }
        // Paged: physical blocks in reverse order.
        let total_blocks = (n + 8).div_ceil(BS) * 2 + 2;
        let mut kv = model.new_paged_cache(BS, total_blocks);
        let table: Vec<u32> = (0..total_blocks as u32).rev().collect();
        let mut ids = input.input_ids.clone();
        let mut pos = positions.streams.clone();
        let got = paged_step(&model, &mut kv, &table, &ids, &pos, 0, feat.as_ref());
        assert_eq!(got, want[0], "{model_name}/{c}: paged prefill logits");
        for step in 0..6 {
            let t = toks[step];
            let p = ids.len() as i64 + positions.rope_delta;
            ids.push(t);
            for s in pos.iter_mut() {
                s.push(p);
            }
            let got = paged_step(&model, &mut kv, &table, &ids, &pos, ids.len() - 1, None);
            assert_eq!(got, want[step + 1], "{model_name}/{c}: paged decode {step}");
        }
        // Prefix hit: a second sequence shares the first sequence's full prompt blocks and
        // computes only the rest of the prompt into its own blocks.
        let shared = (n - 1) / BS;
        let mut table2: Vec<u32> = table[..shared].to_vec();
        let used = (ids.len()).div_ceil(BS);
        table2.extend(table[used..].iter().copied());
        let got = paged_step(
            &model,
            &mut kv,
            &table2,
            &input.input_ids,
            &positions.streams,
            shared * BS,
            feat.as_ref(),
        );
        if exact.is_some() {
            assert_eq!(got, want[0], "{model_name}/{c}: prefix-cache hit logits");
        } else {
            let d = max_abs_diff(&got, &want[0]);
            assert!(
                d < 1e-3,
                "{model_name}/{c}: prefix-cache hit logits differ by {d}"
            );
        }
        assert_eq!(got.len(), v);
    }
}

#[test]
fn paged_equals_contiguous_dense_bf16() {
    check("dense_tied", Precision::Bf16, "bf16");
}

#[test]
fn paged_equals_contiguous_moe_f32() {
    check("moe", Precision::F32, "f32");
}

/// A video encodes the same whole or one temporal slice at a time (the vision stage batches
/// slices): each slice is its own attention segment with the same position embeddings.
#[test]
fn video_slices_encode_like_whole_video() {
    let exact = row_invariant_backend(Precision::Bf16);
    let backend = exact.unwrap_or(BackendChoice::Portable);
    let model = load("dense_tied", Precision::Bf16, backend);
    let input = case("dense_tied", "video", "bf16").input;
    let [t, h, w] = input.video_grid_thw[0];
    assert!(t > 1);
    let whole = model
        .encode_items(&[(&input.pixel_values_videos[..], [t, h, w])])
        .unwrap();
    let per = h * w * model.config.patch_dim();
    let slices: Vec<(&[f32], [usize; 3])> = (0..t)
        .map(|i| {
            (
                &input.pixel_values_videos[i * per..(i + 1) * per],
                [1, h, w],
            )
        })
        .collect();
    let parts = model.encode_items(&slices).unwrap();
    let cat: Vec<f32> = parts.iter().flat_map(|p| p.embeds.clone()).collect();
    if exact.is_some() {
        assert_eq!(cat, whole[0].embeds);
    } else {
        assert!(max_abs_diff(&cat, &whole[0].embeds) < 0.05);
    }
    for l in 0..whole[0].deepstack.len() {
        let cat: Vec<f32> = parts.iter().flat_map(|p| p.deepstack[l].clone()).collect();
        if exact.is_some() {
            assert_eq!(cat, whole[0].deepstack[l]);
        }
    }
}

/// A generated (or drafted) token that happens to be an image placeholder is an ordinary token:
/// transformers passes pixel values to the prefill only. Decoding it with the prompt's features
/// attached gives the same logits as without them (it once failed the whole batch with "more
/// visual pad tokens than visual features"), and recomputing prompt + that token in one step, as
/// a preempted sequence does, agrees with prefill + decode.
#[test]
fn generated_placeholder_is_an_ordinary_token() {
    let exact = row_invariant_backend(Precision::Bf16);
    let backend = exact.unwrap_or(BackendChoice::Portable);
    let model = load("dense_tied", Precision::Bf16, backend);
    let input = case("dense_tied", "image1", "bf16").input;
    let n = input.input_ids.len();
    let positions = model.positions(&input).unwrap();
    let feat = features(&model, &input).unwrap();
    let pad = *input
        .input_ids
        .iter()
        .find(|&&t| model.is_visual_token(t))
        .unwrap();
    let mut ids = input.input_ids.clone();
    ids.push(pad);
    let mut pos = positions.streams.clone();
    for s in pos.iter_mut() {
        s.push(n as i64 + positions.rope_delta);
    }
    let table: Vec<u32> = (0..(n + 1).div_ceil(BS) as u32).collect();
    let span = |first, prompt_rows| VisualSpan {
        features: &feat,
        first,
        prompt_rows,
    };
    let step = |kv: &mut KvBlocks, a: usize, b: usize, visual: Option<VisualSpan>| {
        let input = StepInput {
            tokens: &ids[a..b],
            start: a,
            positions: [&pos[0][a..b], &pos[1][a..b], &pos[2][a..b]],
            blocks: &table,
            visual,
            logits: 1,
        };
        model.step(kv, &[input])
    };
    let decode = |with_features: bool| {
        let mut kv = model.new_paged_cache(BS, table.len());
        step(&mut kv, 0, n, Some(span(0, n))).unwrap();
        let visual = with_features.then(|| span(feat.n_tokens, 0));
        step(&mut kv, n, n + 1, visual).unwrap()
    };
    let with = decode(true);
    assert_eq!(
        with,
        decode(false),
        "a generated placeholder took a feature"
    );
    let mut kv = model.new_paged_cache(BS, table.len());
    let recomputed = step(&mut kv, 0, n + 1, Some(span(0, n))).unwrap();
    if exact.is_some() {
        assert_eq!(recomputed, with, "recompute of prompt + placeholder");
    } else {
        let d = max_abs_diff(&recomputed, &with);
        assert!(d < 1e-3, "recompute of prompt + placeholder differs by {d}");
    }
}
