//! The trained demo model (assets/demo-model, trained from scratch by scripts/train/) answers
//! correctly end to end: held-in questions through the `Pipeline` API (images and clips), the
//! demo's own Rust-drawn pictures, OpenAI chat streaming over HTTP, and `qwen3vl bench`'s
//! accuracy mode on a held-out slice it never saw in training.

mod service_support;

#[path = "../examples/demo_support/pictures.rs"]
mod pictures;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use qwen3vl::bench::backends::BackendKind;
use qwen3vl::bench::dataset::{DatasetFormat, MediaMode};
use qwen3vl::bench::load::LoadConfig;
use qwen3vl::bench::metrics::default_stats;
use qwen3vl::bench::runner::{run_bench, BenchConfig, Mode, Target};
use qwen3vl::pipeline::{ChatMessage, MediaLimits, Pipeline, SamplingParams};
use qwen3vl::service::{Server, Settings};
use rand::SeedableRng;
use serde::Deserialize;
use serde_json::{json, Value};
use service_support::{config, settings, sse_json};

/// VQA accuracy (%) the held-out slice must reach through the server: measured 58.3 (14 of 24,
/// the same as transformers on these weights); one question of slack for bf16 kernel ties.
const SLICE_ACCURACY_BAR: f64 = 54.0;

fn eval_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-eval")
}

/// The demo model unpacked (and sha256-checked) by scripts/demo-model.sh into a temp folder.
fn demo_model() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/demo-model.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .arg(dir.path())
            .status()
            .expect("run demo-model.sh");
        assert!(ok.success(), "scripts/demo-model.sh failed");
        dir
    })
    .path()
}

#[derive(Debug, Deserialize)]
struct HeldIn {
    kind: String,
    path: String,
    question: String,
    answer: String,
    /// transformers' greedy answer on the committed weights (scripts/train/eval_transformers.py
    /// --held-in): the questions it gets right are the ones our engine must get right too.
    transformers: String,
}

/// How many held-in questions transformers answers correctly on the committed weights (of 32).
const HELD_IN_CORRECT: usize = 16;

/// The held-in questions transformers answers correctly.
fn held_in() -> Vec<HeldIn> {
    let text = std::fs::read_to_string(eval_dir().join("held_in.json")).expect("held_in.json");
    let all: Vec<HeldIn> = serde_json::from_str(&text).expect("held_in.json parses");
    let right: Vec<HeldIn> = all
        .into_iter()
        .filter(|h| h.transformers == h.answer)
        .collect();
    assert_eq!(
        right.len(),
        HELD_IN_CORRECT,
        "held_in.json does not match the weights"
    );
    right
}

fn frames(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("clip directory")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// The user message: one image part, or a frame-list video part, then the question.
fn media_part(kind: &str, path: &Path, url: impl Fn(&Path) -> String) -> Value {
    if kind == "video" {
        let list: Vec<String> = frames(path).iter().map(|f| url(f)).collect();
        json!({"type": "video", "video": list})
    } else {
        json!({"type": "image_url", "image_url": {"url": url(path)}})
    }
}

fn file_url(p: &Path) -> String {
    format!("file://{}", p.display())
}

fn data_url(p: &Path) -> String {
    use base64::Engine;
    let bytes = std::fs::read(p).expect("media file");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn greedy() -> SamplingParams {
    SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(24),
        ..Default::default()
    }
}

fn pipeline(media_root: &Path) -> Pipeline {
    Pipeline::builder()
        .model(demo_model())
        .media_limits(MediaLimits {
            media_root: Some(media_root.to_path_buf()),
            ..Default::default()
        })
        .build()
        .expect("pipeline")
}

/// Asks every (message content, expected answer) pair concurrently; returns the mismatches.
fn ask_all(p: &Pipeline, cases: &[(Value, String)]) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = cases
            .iter()
            .map(|(content, expected)| {
                s.spawn(move || {
                    let messages: Vec<ChatMessage> =
                        serde_json::from_value(json!([{"role": "user", "content": content}]))
                            .expect("messages");
                    let out = p.chat_blocking(messages, greedy()).expect("reply");
                    let got = out.choices[0].text.clone();
                    (got.trim() != expected).then(|| format!("{content}: {got:?} != {expected:?}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("thread"))
            .collect()
    })
}

#[test]
fn drawing_matches_the_training_generator() {
    #[derive(Deserialize)]
    struct Obj {
        shape: String,
        colour: String,
        cx: i32,
        cy: i32,
        r: i32,
    }
    #[derive(Deserialize)]
    struct Drawing {
        background: [u8; 3],
        objects: Vec<Obj>,
    }
    let d: Drawing = serde_json::from_str(
        &std::fs::read_to_string(eval_dir().join("drawing.json")).expect("drawing.json"),
    )
    .expect("drawing.json parses");
    let mut img =
        image::RgbImage::from_pixel(pictures::SIZE, pictures::SIZE, image::Rgb(d.background));
    for o in &d.objects {
        pictures::draw_shape(
            &mut img,
            &o.shape,
            pictures::rgb(&o.colour),
            o.cx,
            o.cy,
            o.r,
        );
    }
    let python = image::open(eval_dir().join("drawing.png"))
        .expect("drawing.png")
        .to_rgb8();
    assert_eq!(img.dimensions(), python.dimensions());
    let differ = img
        .pixels()
        .zip(python.pixels())
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differ, 0, "pixels differing from the Python drawing");
}

#[test]
fn held_in_questions_and_demo_pictures_through_the_pipeline() {
    let held = held_in();
    assert!(held.iter().any(|h| h.kind == "image"), "{held:?}");
    let root = eval_dir();
    let mut cases: Vec<(Value, String)> = held
        .iter()
        .map(|h| {
            let part = media_part(&h.kind, &root.join(&h.path), file_url);
            (
                json!([part, {"type": "text", "text": h.question}]),
                h.answer.clone(),
            )
        })
        .collect();
    // Pictures drawn by the demo's Rust code (fixed seeds), asked the demo's question.
    let work = tempfile::tempdir().expect("tempdir");
    for seed in 0..6u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let objects = pictures::random_objects(&mut rng, 1);
        let path = work.path().join(format!("demo{seed}.png"));
        pictures::picture(pictures::BACKGROUNDS[seed as usize % 4], &objects)
            .save(&path)
            .expect("picture saved");
        let part = media_part("image", &path, file_url);
        let q = json!({"type": "text", "text": "What is in this picture?"});
        cases.push((json!([part, q]), pictures::describe(&objects[0])));
    }
    // Held-in media live under assets/, the demo pictures in the temp folder: one pipeline each.
    let (held_cases, demo_cases) = cases.split_at(held.len());
    let mut wrong = ask_all(&pipeline(&root), held_cases);
    wrong.extend(ask_all(&pipeline(work.path()), demo_cases));
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
}

fn server() -> Server {
    let s = Settings {
        model_dir: Some(demo_model().to_path_buf()),
        media_root: Some(eval_dir()),
        ..settings()
    };
    Server::start(config(s), false).expect("server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_streaming_chat_and_bench_accuracy_through_the_server() {
    let server = server();
    let base = format!("http://{}", server.local_addr());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    // Streaming OpenAI chat, media inline as data URLs (frame lists for the clips): the deltas
    // put together are the trained answer.
    let root = eval_dir();
    for h in held_in().iter().step_by(3) {
        let part = media_part(&h.kind, &root.join(&h.path), data_url);
        let body = json!({"model": "qwen3vl", "stream": true, "temperature": 0, "max_tokens": 24,
            "messages": [{"role": "user", "content": [part, {"type": "text", "text": h.question}]}]});
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 200);
        let (chunks, done) = sse_json(&r.text().await.expect("body"));
        assert!(done, "stream ended without [DONE]");
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert!(chunks.len() >= 3, "{chunks:?}");
        assert_eq!(text.trim(), h.answer, "{} ({})", h.question, h.path);
    }

    // `qwen3vl bench --mode all` on the held-out TextVQA slice (AISBench layout and scoring).
    let out = tempfile::tempdir().expect("tempdir");
    let cfg = BenchConfig {
        dataset: root.join("textvqa_slice.jsonl"),
        dataset_format: DatasetFormat::Auto,
        mode: Mode::All,
        target: Target::Http {
            kind: BackendKind::OpenaiChat,
            base_url: base.clone(),
            api_key: None,
            attempts: 1,
            timeout: Some(Duration::from_secs(120)),
        },
        model: None,
        media: MediaMode::Base64,
        num_frames: 4,
        load: LoadConfig {
            concurrency: 8,
            request_rate: 0.0,
            burstiness: 1.0,
            seed: 0,
        },
        num_requests: None,
        warmup: 0,
        max_tokens: 24,
        temperature: 0.0,
        ignore_eos: false,
        stream: true,
        stats: default_stats(),
        output_dir: out.path().to_path_buf(),
        name: Some("slice".into()),
        tokenizer: None,
        progress: false,
    };
    let run = run_bench(&cfg).await.expect("bench run");
    let acc = run.report.accuracy.as_ref().expect("accuracy result");
    assert_eq!((acc.questions, acc.failed), (24, 0), "{acc:?}");
    assert!(
        acc.accuracy >= SLICE_ACCURACY_BAR,
        "held-out slice accuracy {:.1} % is below {SLICE_ACCURACY_BAR} %",
        acc.accuracy
    );
    server.stop().expect("server stops");
}
