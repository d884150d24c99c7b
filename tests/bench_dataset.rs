//! Dataset readers (mm_custom, TextVQA layout) and request content (spec §3.1, §3.5).

use base64::Engine as _;
use qwen3vl::bench::dataset::{
    content, frame_indices, load, textvqa_annotations_path, DatasetFormat, MediaKind, MediaMode,
    Part,
};
use qwen3vl::bench::BenchError;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nfake";
const JPG: &[u8] = b"\xff\xd8\xff\xe0fake";

#[test]
fn mm_custom_lines() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.jpg"), JPG).unwrap();
    std::fs::write(dir.path().join("b.png"), PNG).unwrap();
    std::fs::write(dir.path().join("v.mp4"), b"mp4bytes").unwrap();
    let ds = dir.path().join("mm.jsonl");
    std::fs::write(
        &ds,
        concat!(
            r#"{"type": "image", "path": ["a.jpg"], "question": "what brand?", "answer": "dakota"}"#,
            "\n\n",
            r#"{"type": "image", "path": ["a.jpg", "b.png"], "question": "compare", "answer": ["x", "y"]}"#,
            "\n",
            r#"{"type": "video", "path": ["v.mp4"], "question": "describe"}"#,
            "\n"
        ),
    )
    .unwrap();
    let d = load(&ds, DatasetFormat::Auto).unwrap();
    assert_eq!(d.format, DatasetFormat::MmCustom);
    assert_eq!(d.samples.len(), 3);
    let s0 = &d.samples[0];
    assert_eq!(s0.id, "1");
    assert_eq!(s0.kind, MediaKind::Image);
    assert_eq!(s0.prompt, "what brand?");
    assert_eq!(s0.paths, vec![dir.path().join("a.jpg")]);
    assert_eq!(s0.answers.len(), 1);
    assert_eq!(d.samples[1].id, "3"); // line numbers count the blank line
    assert_eq!(d.samples[1].answers.len(), 2);
    assert!(d.samples[2].answers.is_empty());
    assert!(!d.has_answers());

    // Path mode: file:// URLs, media first then the text.
    let parts = content(&d.samples[1], MediaMode::Path, 5).unwrap();
    assert_eq!(
        parts,
        vec![
            Part::Image(format!("file://{}", dir.path().join("a.jpg").display())),
            Part::Image(format!("file://{}", dir.path().join("b.png").display())),
            Part::Text("compare".into()),
        ]
    );
    // Base64 mode: data URIs with the sniffed image type; a video file travels whole.
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let parts = content(&d.samples[1], MediaMode::Base64, 5).unwrap();
    assert_eq!(
        parts[0],
        Part::Image(format!("data:image/jpeg;base64,{}", b64(JPG)))
    );
    assert_eq!(
        parts[1],
        Part::Image(format!("data:image/png;base64,{}", b64(PNG)))
    );
    let parts = content(&d.samples[2], MediaMode::Base64, 5).unwrap();
    assert_eq!(
        parts[0],
        Part::Video(format!("data:video/mp4;base64,{}", b64(b"mp4bytes")))
    );
}

#[test]
fn video_frame_directory_is_sampled_like_aisbench() {
    assert_eq!(frame_indices(10, 5), vec![0, 2, 4, 6, 9]);
    assert_eq!(frame_indices(100, 5), vec![0, 24, 49, 74, 99]);
    assert_eq!(frame_indices(3, 3), vec![0, 1, 2]);
    assert_eq!(frame_indices(7, 1), vec![0]);
    assert!(frame_indices(0, 5).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("clip");
    std::fs::create_dir(&frames).unwrap();
    for i in 0..10 {
        std::fs::write(frames.join(format!("f{i:02}.png")), format!("frame{i}")).unwrap();
    }
    let ds = dir.path().join("v.jsonl");
    std::fs::write(
        &ds,
        r#"{"type": "video", "path": ["clip"], "question": "q"}"#,
    )
    .unwrap();
    let d = load(&ds, DatasetFormat::MmCustom).unwrap();
    let parts = content(&d.samples[0], MediaMode::Base64, 5).unwrap();
    let Part::Video(url) = &parts[0] else {
        panic!("expected a video part")
    };
    let payload = url.strip_prefix("data:video/jpeg;base64,").unwrap();
    let got: Vec<String> = payload
        .split(',')
        .map(|f| {
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(f).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(got, vec!["frame0", "frame2", "frame4", "frame6", "frame9"]);
}

fn dataset_error(text: &str) -> (usize, String) {
    let dir = tempfile::tempdir().unwrap();
    let ds = dir.path().join("bad.jsonl");
    std::fs::write(&ds, text).unwrap();
    match load(&ds, DatasetFormat::MmCustom) {
        Err(BenchError::Dataset { line, message, .. }) => (line, message),
        other => panic!("expected a dataset error, got {other:?}"),
    }
}

#[test]
fn bad_lines_name_their_line() {
    let good = r#"{"type": "image", "path": ["a.jpg"], "question": "q"}"#;
    let (line, msg) = dataset_error(&format!("{good}\n{good}\n{{not json\n"));
    assert_eq!(line, 3);
    assert!(msg.contains("invalid JSON"), "{msg}");
    let (line, msg) = dataset_error(&format!(
        "{good}\n{}\n",
        r#"{"type": "sound", "path": ["a"], "question": "q"}"#
    ));
    assert_eq!(line, 2);
    assert!(msg.contains("image, video or audio"), "{msg}");
    let (line, msg) = dataset_error(r#"{"type": "image", "path": [], "question": "q"}"#);
    assert_eq!(line, 1);
    assert!(msg.contains("path"), "{msg}");
    let (_, msg) = dataset_error(r#"{"type": "image", "path": ["a.jpg"]}"#);
    assert!(msg.contains("question"), "{msg}");
    let (_, msg) = dataset_error("[1, 2]\n");
    assert!(msg.contains("JSON object"), "{msg}");
    let (_, msg) = dataset_error("\n\n");
    assert!(msg.contains("no samples"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        load(&dir.path().join("missing.jsonl"), DatasetFormat::Auto),
        Err(BenchError::Io { .. })
    ));
}

#[test]
fn textvqa_layout() {
    let dir = tempfile::tempdir().unwrap();
    let json_dir = dir.path().join("textvqa_json");
    let img_dir = dir.path().join("train_images");
    std::fs::create_dir_all(&json_dir).unwrap();
    std::fs::create_dir_all(&img_dir).unwrap();
    std::fs::write(img_dir.join("0004c9478eeda995.jpg"), JPG).unwrap();
    let q = json_dir.join("textvqa_val.jsonl");
    let img = img_dir.join("0004c9478eeda995.jpg");
    std::fs::write(
        &q,
        format!(
            "{}\n",
            serde_json::json!({"question_id": 34602, "image": img, "question": "what is the brand of this camera?"})
        ),
    )
    .unwrap();
    assert_eq!(
        textvqa_annotations_path(&q),
        json_dir.join("textvqa_val_annotations.json")
    );
    let answers: Vec<_> = (0..10)
        .map(|i| serde_json::json!({"answer": if i < 9 { "dakota" } else { "dakota digital" }, "answer_id": i + 1}))
        .collect();
    std::fs::write(
        json_dir.join("textvqa_val_annotations.json"),
        serde_json::json!({"annotations": [{"question_id": 34602, "answers": answers}]})
            .to_string(),
    )
    .unwrap();
    let d = load(&q, DatasetFormat::Auto).unwrap();
    assert_eq!(d.format, DatasetFormat::Textvqa);
    assert!(d.has_answers());
    let s = &d.samples[0];
    assert_eq!(s.id, "34602");
    assert_eq!(
        s.prompt,
        "what is the brand of this camera? Answer the question using a single word or phrase."
    );
    assert_eq!(s.answers.len(), 10);
    assert_eq!(s.answers[9].answer, "dakota digital");
    assert_eq!(s.answers[0].identity, serde_json::json!({"answer_id": 1}));

    // A question without annotations is an error naming its line.
    std::fs::write(
        &q,
        format!(
            "{}\n{}\n",
            serde_json::json!({"question_id": 34602, "image": img, "question": "a"}),
            serde_json::json!({"question_id": 7, "image": img, "question": "b"})
        ),
    )
    .unwrap();
    match load(&q, DatasetFormat::Textvqa) {
        Err(BenchError::Dataset { line, message, .. }) => {
            assert_eq!(line, 2);
            assert!(message.contains("question_id 7"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
