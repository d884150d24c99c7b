//! The `preprocess` output contract: a safetensors file with `input_ids` I64 [seq],
//! `pixel_values` F32 [rows, 1536], `image_grid_thw` I64 [n, 3] and, for videos,
//! `pixel_values_videos` F32 and `video_grid_thw` I64.

mod preprocess_support;

use preprocess_support::*;
use qwen3vl::prompt::ChatMessage;
use safetensors::Dtype;

#[test]
fn safetensors_layout_matches_the_contract() {
    let proc = processor("small");
    let msgs: Vec<ChatMessage> = serde_json::from_value(serde_json::json!([
        {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "file://inputs/tiny.png"}},
            {"type": "video_url", "video_url": {"url": "file://inputs/odd.webm"}},
            {"type": "text", "text": "Describe."}]}
    ]))
    .unwrap();
    let out = proc.process(&msgs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.safetensors");
    out.write_safetensors(&path).unwrap();
    let t = load_tensors(&path);
    let rows = |g: &[[u32; 3]]| {
        g.iter()
            .map(|g| (g[0] * g[1] * g[2]) as usize)
            .sum::<usize>()
    };
    assert_eq!(t["input_ids"].0, Dtype::I64);
    assert_eq!(t["input_ids"].1, vec![out.input_ids.len()]);
    assert_eq!(t["pixel_values"].0, Dtype::F32);
    assert_eq!(t["pixel_values"].1, vec![rows(&out.image_grid_thw), 1536]);
    assert_eq!(t["image_grid_thw"].0, Dtype::I64);
    assert_eq!(t["image_grid_thw"].1, vec![1, 3]);
    assert_eq!(t["pixel_values_videos"].0, Dtype::F32);
    assert_eq!(
        t["pixel_values_videos"].1,
        vec![rows(&out.video_grid_thw), 1536]
    );
    assert_eq!(t["video_grid_thw"].0, Dtype::I64);
    assert_eq!(as_f32(&t["pixel_values"].2), out.pixel_values);
    assert_eq!(
        as_i64(&t["input_ids"].2),
        out.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>()
    );

    // Text only: image tensors present but empty, no video tensors.
    let text: Vec<ChatMessage> =
        serde_json::from_value(serde_json::json!([{"role": "user", "content": "hi"}])).unwrap();
    let out = proc.process(&text).unwrap();
    out.write_safetensors(&path).unwrap();
    let t = load_tensors(&path);
    assert_eq!(t["pixel_values"].1, vec![0, 1536]);
    assert_eq!(t["image_grid_thw"].1, vec![0, 3]);
    assert!(!t.contains_key("pixel_values_videos"));
}

/// The `qwen3vl preprocess` binary writes the contract file with the same ids and grids as HF.
#[test]
fn preprocess_binary_writes_the_contract_file() {
    let model = model_dir("default");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("inputs/odd.png"),
        dir.path().join("odd.png"),
    )
    .unwrap();
    let messages = dir.path().join("messages.json");
    std::fs::write(
        &messages,
        r#"[{"role":"user","content":[
        {"type":"image_url","image_url":{"url":"file://odd.png"}},
        {"type":"text","text":"Describe this image."}]}]"#,
    )
    .unwrap();
    let out = dir.path().join("out.safetensors");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_qwen3vl"))
        .args(["preprocess", "--model"])
        .arg(model.path())
        .arg("--messages")
        .arg(&messages)
        .arg("--output")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let t = load_tensors(&out);
    let case = &cases()["media_cases"][0]; // img_odd: same messages
    let want = load_tensors(&fixtures().join(case["expected"].as_str().unwrap()));
    assert_eq!(as_i64(&t["input_ids"].2), as_i64(&want["input_ids"].2));
    assert_eq!(
        as_i64(&t["image_grid_thw"].2),
        as_i64(&want["image_grid_thw"].2)
    );
}
