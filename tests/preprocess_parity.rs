//! Parity with the Hugging Face Qwen3-VL processor (transformers 4.57.6: the default fast image
//! processor, and the slow PIL one for the opt-in parity mode) on the fixtures made by
//! `scripts/ref/gen_processor_fixtures.py`, including requests with `mm_processor_kwargs`,
//! per-item settings and alpha settings: ids and grids exactly, pixels within two uint8 steps
//! (max |Δ| ≤ 2/127.5; JPEG sources, decoded by another libjpeg, within 4), mean |Δ| ≤ 0.002.

mod preprocess_support;

use std::collections::HashMap;

use preprocess_support::*;
use qwen3vl::media::{MediaOverrides, RgbaBackground};
use qwen3vl::prompt::{ChatMessage, ProcessedInputs, Processor, RenderOptions};

const MAX_DIFF: f64 = 2.0 / 127.5 + 1e-6;
const MAX_DIFF_JPEG: f64 = 4.0 / 127.5 + 1e-6;
const MEAN_DIFF: f64 = 0.002;

/// The reference value of a stored uint8 level: the slow processor rescales in f64 first, the
/// fast image and video processors normalise in one fused f32 step.
fn expected_value(q: u8, slow_image: bool) -> f32 {
    if slow_image {
        (((q as f64) * (1.0 / 255.0)) as f32 - 0.5) / 0.5
    } else {
        (q as f32 - 127.5) / 127.5
    }
}

/// Compares one visual item's rows with the stored reference rows; returns (max, mean) |Δ|.
fn compare_item(
    name: &str,
    ours: &[f32],
    row_len: usize,
    t: &HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    prefix: &str,
    slow_image: bool,
    max_allowed: f64,
) -> (f64, f64) {
    let rows = as_i64(&t[&format!("{prefix}_rows")].2);
    let q = &t[&format!("{prefix}_q")].2;
    let want_mean = as_f64(&t[&format!("{prefix}_mean")].2)[0];
    let (mut max, mut sum, mut exact) = (0f64, 0f64, 0usize);
    for (k, &r) in rows.iter().enumerate() {
        let ours_row = &ours[r as usize * row_len..(r as usize + 1) * row_len];
        for (j, &v) in ours_row.iter().enumerate() {
            let d = (v as f64 - expected_value(q[k * row_len + j], slow_image) as f64).abs();
            exact += (d == 0.0) as usize;
            max = max.max(d);
            sum += d;
        }
    }
    let n = rows.len() * row_len;
    let mean = sum / n as f64;
    let our_mean = ours.iter().map(|&v| v as f64).sum::<f64>() / ours.len() as f64;
    eprintln!(
        "{name}/{prefix}: {} rows checked, max |Δ| {max:.5}, mean |Δ| {mean:.6}, exact {:.4}, mean {our_mean:.6} vs {want_mean:.6}",
        rows.len(),
        exact as f64 / n as f64
    );
    assert!(max <= max_allowed, "{name}/{prefix}: max |Δ| {max}");
    assert!(mean <= MEAN_DIFF, "{name}/{prefix}: mean |Δ| {mean}");
    assert!(
        (our_mean - want_mean).abs() <= MEAN_DIFF,
        "{name}/{prefix}: overall mean {our_mean} vs {want_mean}"
    );
    (max, mean)
}

fn check_case(case: &serde_json::Value, procs: &mut HashMap<String, Processor>) {
    let name = case["name"].as_str().unwrap();
    let cfg = case["config"].as_str().unwrap();
    let background = case["rgba_background"].as_str().unwrap_or("white");
    let slow = cases()["configs"][cfg]["slow"].as_bool() == Some(true);
    let proc = procs
        .entry(format!("{cfg}/{background}"))
        .or_insert_with(|| processor_with(cfg, RgbaBackground::parse(background).unwrap()));
    let messages: Vec<ChatMessage> = serde_json::from_value(case["messages"].clone()).unwrap();
    let kwargs = MediaOverrides::from_json(&case["mm_processor_kwargs"], "mm_processor_kwargs")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let opts = RenderOptions {
        add_generation_prompt: true,
        ..Default::default()
    };
    let out: ProcessedInputs = proc
        .process_request(&messages, &opts, &kwargs)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    // JPEG sources are decoded by another libjpeg than PIL's: a little more room.
    let media_urls = serde_json::to_string(&case["messages"]).unwrap();
    let max_allowed = if media_urls.contains(".jpg") {
        MAX_DIFF_JPEG
    } else {
        MAX_DIFF
    };
    assert_eq!(
        out.prompt,
        case["prompt"].as_str().unwrap(),
        "{name}: rendered prompt"
    );
    let t = load_tensors(&fixtures().join(case["expected"].as_str().unwrap()));
    let ids: Vec<i64> = out.input_ids.iter().map(|&x| x as i64).collect();
    assert_eq!(ids, as_i64(&t["input_ids"].2), "{name}: input_ids");
    let row_len = out.patch_dim;
    for (key, grids, pixels, image) in [
        ("image", &out.image_grid_thw, &out.pixel_values, true),
        (
            "video",
            &out.video_grid_thw,
            &out.pixel_values_videos,
            false,
        ),
    ] {
        let want: Vec<i64> = t
            .get(&format!("{key}_grid_thw"))
            .map(|x| as_i64(&x.2))
            .unwrap_or_default();
        let got: Vec<i64> = grids.iter().flatten().map(|&x| x as i64).collect();
        assert_eq!(got, want, "{name}: {key}_grid_thw");
        let mut start = 0;
        for (k, g) in grids.iter().enumerate() {
            let n = (g[0] * g[1] * g[2]) as usize * row_len;
            compare_item(
                name,
                &pixels[start..start + n],
                row_len,
                &t,
                &format!("{key}{k}"),
                image && slow,
                max_allowed,
            );
            start += n;
        }
        assert_eq!(start, pixels.len(), "{name}: {key} pixel rows");
    }
    if let Some((_, shape, bytes)) = t.get("pixel_values") {
        let want = as_f32(bytes);
        assert_eq!(shape[1], row_len);
        assert_eq!(want.len(), out.pixel_values.len());
        let max = want
            .iter()
            .zip(&out.pixel_values)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            max as f64 <= MAX_DIFF,
            "{name}: full pixel_values max |Δ| {max}"
        );
    }
}

#[test]
fn processor_matches_hf_fixtures() {
    let mut procs = HashMap::new();
    for case in cases()["media_cases"].as_array().unwrap() {
        check_case(case, &mut procs);
    }
}
