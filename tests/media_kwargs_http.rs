//! Resolution and frame controls over HTTP: `mm_processor_kwargs` on chat / completions /
//! generate bodies, per-item settings, the operator's caps, 422s naming the field, and the
//! visual token count in `usage.prompt_tokens_details`.

mod service_support;

use std::sync::OnceLock;
use std::time::Duration;

use qwen3vl::service::Server;
use serde_json::{json, Value};
use service_support::*;

/// A server whose operator caps images at 200,000 pixels and videos at 8 frames, with a
/// server-wide default of at most 100,000 pixels per image.
fn server() -> &'static Server {
    static S: OnceLock<Server> = OnceLock::new();
    S.get_or_init(|| {
        let s = qwen3vl::service::Settings {
            max_image_pixels: Some(200_000),
            max_video_frames: Some(8),
            mm_processor_kwargs: Some(json!({"max_pixels": 100_000})),
            ..settings()
        };
        Server::start(config(s), false).expect("server starts")
    })
}

async fn post(path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
        .post(format!("http://{}{path}", server().local_addr()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}")),
    )
}

fn chat(part: Value, kwargs: Option<Value>) -> Value {
    let mut body = json!({
        "model": "qwen3vl",
        "messages": [{"role": "user", "content": [part, {"type": "text", "text": "What is it?"}]}],
        "max_tokens": 2,
        "temperature": 0.0,
        "ignore_eos": true,
    });
    if let Some(k) = kwargs {
        body["mm_processor_kwargs"] = k;
    }
    body
}

fn image(w: u32, h: u32) -> Value {
    json!({"type": "image_url", "image_url": {"url": png_data_url(w, h)}})
}

fn visual_tokens(v: &Value) -> u64 {
    v["usage"]["prompt_tokens_details"]["visual_tokens"]
        .as_u64()
        .unwrap_or_else(|| panic!("no visual_tokens in {v}"))
}

/// smart_resize's token count for an image (factor 32, merge 2 → one token per 32×32 block).
fn tokens_for(h: u32, w: u32, min: u64, max: u64) -> u64 {
    let f = 32.0;
    let (hf, wf) = (h as f64, w as f64);
    let (mut hb, mut wb) = ((hf / f).round() * f, (wf / f).round() * f);
    if hb * wb > max as f64 {
        let beta = (hf * wf / max as f64).sqrt();
        hb = f.max((hf / beta / f).floor() * f);
        wb = f.max((wf / beta / f).floor() * f);
    } else if hb * wb < min as f64 {
        let beta = (min as f64 / (hf * wf)).sqrt();
        hb = (hf * beta / f).ceil() * f;
        wb = (wf * beta / f).ceil() * f;
    }
    (hb as u64 / 32) * (wb as u64 / 32)
}

#[tokio::test]
async fn request_kwargs_layer_over_server_defaults_and_caps() {
    // Server default: max_pixels 100,000 (the checkpoint's min 65,536 stays).
    let (s, v) = post("/v1/chat/completions", chat(image(640, 480), None)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(visual_tokens(&v), tokens_for(480, 640, 65_536, 100_000));
    // A request may lower the budget…
    let (s, v) = post(
        "/v1/chat/completions",
        chat(image(640, 480), Some(json!({"max_pixels": 20_000}))),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(visual_tokens(&v), tokens_for(480, 640, 65_536, 20_000));
    // …and raise it up to the operator's cap.
    let (s, v) = post(
        "/v1/chat/completions",
        chat(
            image(640, 480),
            Some(json!({"min_pixels": 150_000, "max_pixels": 200_000})),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(visual_tokens(&v), tokens_for(480, 640, 150_000, 200_000));
    // A per-item setting wins over the request's.
    let item = json!({"type": "image_url", "image_url": {"url": png_data_url(640, 480), "max_pixels": 10_000}});
    let (s, v) = post(
        "/v1/chat/completions",
        chat(item, Some(json!({"max_pixels": 150_000}))),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(visual_tokens(&v), tokens_for(480, 640, 65_536, 10_000));
    // A text-only prompt reports no details.
    let (s, v) = post(
        "/v1/chat/completions",
        json!({"model": "qwen3vl", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v["usage"].get("prompt_tokens_details").is_none(), "{v}");
}

#[tokio::test]
async fn vllm_generate_takes_kwargs_too() {
    let body = json!({
        "prompt": [{"type": "image_url", "image_url": png_data_url(640, 480)},
                   {"type": "text", "text": "Describe."}],
        "max_tokens": 1,
        "mm_processor_kwargs": {"max_pixels": 20_000},
    });
    let (s, v) = post("/generate", body).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        "/generate",
        json!({"prompt": "hi", "max_tokens": 1, "mm_processor_kwargs": {"fps": -1}}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(v.to_string().contains("mm_processor_kwargs.fps"), "{v}");
}

#[tokio::test]
async fn every_bad_setting_is_a_422_naming_the_field() {
    let clip = media_root().join("clip.mp4").display().to_string();
    let video = json!({"type": "video_url", "video_url": {"url": clip}});
    let cases = [
        (
            chat(image(64, 64), Some(json!({"max_pixels": -1}))),
            "mm_processor_kwargs.max_pixels",
        ),
        (
            chat(image(64, 64), Some(json!({"max_pixels": "many"}))),
            "mm_processor_kwargs.max_pixels",
        ),
        (
            chat(
                image(64, 64),
                Some(json!({"min_pixels": 90_000, "max_pixels": 80_000})),
            ),
            "mm_processor_kwargs.min_pixels",
        ),
        // Over the operator's cap.
        (
            chat(image(64, 64), Some(json!({"max_pixels": 300_000}))),
            "mm_processor_kwargs.max_pixels",
        ),
        (
            chat(
                image(64, 64),
                Some(json!({"size": {"shortest_edge": 4096, "longest_edge": 1_000_000}})),
            ),
            "mm_processor_kwargs.size.longest_edge",
        ),
        (
            chat(video.clone(), Some(json!({"num_frames": 9}))),
            "mm_processor_kwargs.num_frames",
        ),
        (
            chat(video.clone(), Some(json!({"max_frames": 100}))),
            "mm_processor_kwargs.max_frames",
        ),
        (
            chat(video.clone(), Some(json!({"fps": 0}))),
            "mm_processor_kwargs.fps",
        ),
        (
            chat(video.clone(), Some(json!({"fps": 1, "num_frames": 4}))),
            "mm_processor_kwargs.num_frames",
        ),
        (
            chat(image(64, 64), Some(json!({"resized_height": 10}))),
            "mm_processor_kwargs.resized_height",
        ),
        (
            chat(image(64, 64), Some(json!([1, 2]))),
            "mm_processor_kwargs",
        ),
        // Per item.
        (
            chat(
                json!({"type": "image_url", "image_url": {"url": png_data_url(64, 64), "max_pixels": 0}}),
                None,
            ),
            "messages[0].content[0].image_url.max_pixels",
        ),
        (
            chat(
                json!({"type": "image", "image": png_data_url(64, 64), "max_pixels": 900_000}),
                None,
            ),
            "messages[0].content[0].max_pixels",
        ),
        (
            chat(
                json!({"type": "video", "video": clip, "max_pixels": 1000}),
                None,
            ),
            "messages[0].content[0].max_pixels",
        ),
        (
            chat(json!({"type": "video", "video": clip, "nframes": 50}), None),
            "messages[0].content[0].num_frames",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = post("/v1/chat/completions", body.clone()).await;
        assert_eq!(s, 422, "{field}: {v}");
        assert!(v.to_string().contains(field), "{field}: {v}");
    }
    // Completions check the setting even without media.
    let (s, v) = post(
        "/v1/completions",
        json!({"model": "qwen3vl", "prompt": "hi", "max_tokens": 1, "mm_processor_kwargs": {"min_frames": 0}}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v.to_string().contains("mm_processor_kwargs.min_frames"),
        "{v}"
    );
}

#[tokio::test]
async fn video_frames_follow_kwargs_under_the_cap() {
    // clip.mp4: 48 frames at 12 fps, 200×120. num_frames 4 → 2 temporal patches.
    let clip = media_root().join("clip.mp4").display().to_string();
    let video = json!({"type": "video_url", "video_url": {"url": clip}});
    let (s, four) = post(
        "/v1/chat/completions",
        chat(video.clone(), Some(json!({"num_frames": 4}))),
    )
    .await;
    assert_eq!(s, 200, "{four}");
    let (s, eight) = post(
        "/v1/chat/completions",
        chat(video, Some(json!({"num_frames": 8}))),
    )
    .await;
    assert_eq!(s, 200, "{eight}");
    // Twice the temporal patches at the same spatial size (the total-pixel budget is not hit).
    assert_eq!(visual_tokens(&eight), 2 * visual_tokens(&four));
}

#[test]
fn server_defaults_over_the_cap_are_a_startup_error() {
    let s = qwen3vl::service::Settings {
        max_image_pixels: Some(100_000),
        mm_processor_kwargs: Some(json!({"max_pixels": 500_000})),
        ..settings()
    };
    let e = match Server::start(config(s), false) {
        Ok(_) => panic!("a default above the cap must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("mm_processor_kwargs.max_pixels"), "{e}");
    let bad = qwen3vl::service::Settings {
        mm_processor_kwargs: Some(json!({"fps": "fast"})),
        ..settings()
    };
    let e = bad.finish().unwrap_err();
    assert!(e.contains("--mm-processor-kwargs.fps"), "{e}");
}
