//! Stream a chat reply through the serving pipeline.
//!
//! ```text
//! cargo run --release --example chat -- <model-dir> [image-file]
//! ```
use futures::StreamExt;
use qwen3vl::pipeline::{ChatMessage, Event, MediaLimits, Pipeline, SamplingParams};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: chat <model-dir> [image-file]")?;
    let image = args.next().map(std::fs::canonicalize).transpose()?;
    let pipeline = Pipeline::builder()
        .model(model)
        .media_limits(MediaLimits {
            media_root: Some("/".into()),
            ..Default::default()
        })
        .on_progress(|m| eprintln!("[pipeline] {m}"))
        .build()?;
    let mut content = vec![json!({"type": "text", "text": "Describe this in one sentence."})];
    if let Some(img) = image {
        content.insert(0, json!({"type": "image", "image": img}));
    }
    let messages: Vec<ChatMessage> =
        serde_json::from_value(json!([{"role": "user", "content": content}]))?;
    let params = SamplingParams {
        max_tokens: Some(64),
        ..Default::default()
    };
    futures::executor::block_on(async {
        let mut events = pipeline.chat(messages, params);
        while let Some(event) = events.next().await {
            match event {
                Event::Delta { text, .. } => print!("{text}"),
                Event::Finished {
                    reason,
                    usage,
                    timings,
                    ..
                } => println!(
                    "\n[{}] {} prompt + {} generated tokens, TTFT {:.2}s",
                    reason.as_str(),
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    timings.first_token.unwrap_or_default()
                ),
                Event::Error(e) => return Err(e.into()),
            }
        }
        Ok(())
    })
}
