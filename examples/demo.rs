//! Demo: an image and a question through the whole serving pipeline (media → vision → LLM
//! scheduler → stream actors), with the answer streamed as it is produced. The model is a
//! random-weight checkpoint, so the answer is noise — the point is the path, not the words.
//!
//! `cargo run --release --example demo -- <model-dir> [question]`

use std::io::Write;

use futures::StreamExt;
use qwen3vl::pipeline::{ChatMessage, Event, MediaLimits, Pipeline, SamplingParams};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: demo <model-dir> [question]")?;
    let question = args
        .next()
        .unwrap_or_else(|| "What is in this picture?".into());

    // A 320×240 test picture: a colour gradient with a dark square.
    let work = tempfile::tempdir()?;
    let image = work.path().join("picture.png");
    image::RgbImage::from_fn(320, 240, |x, y| {
        let square = (100..180).contains(&x) && (80..160).contains(&y);
        if square {
            image::Rgb([20, 20, 60])
        } else {
            image::Rgb([(x * 255 / 319) as u8, (y * 255 / 239) as u8, 128])
        }
    })
    .save(&image)?;

    let pipeline = Pipeline::builder()
        .model(model)
        .media_limits(MediaLimits {
            media_root: Some(work.path().to_path_buf()),
            ..Default::default()
        })
        .on_progress(|m| eprintln!("[pipeline] {m}"))
        .build()?;
    let messages: Vec<ChatMessage> = serde_json::from_value(json!([{
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": format!("file://{}", image.display())}},
            {"type": "text", "text": question},
        ]
    }]))?;
    // Greedy, so the demo prints the same thing every time.
    let params = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(48),
        ..Default::default()
    };
    println!("{question}");
    futures::executor::block_on(async {
        let mut events = pipeline.chat(messages, params);
        let mut out = std::io::stdout();
        while let Some(event) = events.next().await {
            match event {
                Event::Delta { text, .. } => {
                    print!("{text}");
                    out.flush()?;
                }
                Event::Finished { reason, usage, timings, .. } => println!(
                    "\n[{}] {} prompt tokens (image included) + {} generated, time to first token {:.3}s",
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
