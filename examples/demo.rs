//! Demo: a freshly drawn picture and a question through the whole serving pipeline (media →
//! vision → LLM scheduler → stream actors), the answer streamed as it is produced. The model is
//! the small Qwen3-VL trained from scratch by `scripts/train/` on pictures like this one (real
//! architecture, real tokenizer and chat template), so the answer can be checked: the demo
//! prints what it drew and whether the model said so.
//!
//! `cargo run --release --example demo -- <model-dir> [question]`
//! (`QWEN3VL_DEMO_SEED=n` draws a fixed picture instead of a fresh one.)

#[path = "demo_support/pictures.rs"]
mod pictures;

use std::io::Write;

use futures::StreamExt;
use qwen3vl::pipeline::{ChatMessage, Event, MediaLimits, Pipeline, SamplingParams};
use rand::{Rng, SeedableRng};
use serde_json::json;

const DEFAULT_QUESTION: &str = "What is in this picture?";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: demo <model-dir> [question]")?;
    let question = args.next().unwrap_or_else(|| DEFAULT_QUESTION.into());

    let seed = match std::env::var("QWEN3VL_DEMO_SEED") {
        Ok(s) => s.parse()?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // The trained describe task has one object; other questions get one to four.
    let n = if question == DEFAULT_QUESTION {
        1
    } else {
        rng.random_range(1..=4)
    };
    let objects = pictures::random_objects(&mut rng, n);
    let background = pictures::BACKGROUNDS[rng.random_range(0..pictures::BACKGROUNDS.len())];
    let work = tempfile::tempdir()?;
    let image = work.path().join("picture.png");
    pictures::picture(background, &objects).save(&image)?;
    let shown = std::env::temp_dir().join("qwen3vl-demo-picture.png");
    std::fs::copy(&image, &shown)?;
    for o in &objects {
        println!(
            "drawn: {} {} at ({}, {}), radius {} (64x64 picture, {})",
            o.colour,
            o.shape,
            o.cx,
            o.cy,
            o.r,
            shown.display()
        );
    }

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
    // Greedy: the model's single best answer.
    let params = SamplingParams {
        temperature: Some(0.0),
        max_tokens: Some(48),
        ..Default::default()
    };
    println!("{question}");
    let answer = futures::executor::block_on(async {
        let mut events = pipeline.chat(messages, params);
        let mut out = std::io::stdout();
        let mut answer = String::new();
        while let Some(event) = events.next().await {
            match event {
                Event::Delta { text, .. } => {
                    print!("{text}");
                    answer.push_str(&text);
                    out.flush()?;
                }
                Event::Finished { reason, usage, timings, .. } => println!(
                    "\n[{}] {} prompt tokens (image included) + {} generated, time to first token {:.3}s",
                    reason.as_str(),
                    usage.prompt_tokens,
                    usage.completion_tokens,
                    timings.first_token.unwrap_or_default()
                ),
                Event::Error(e) => return Err::<String, Box<dyn std::error::Error>>(e.into()),
            }
        }
        Ok(answer)
    })?;
    if question == DEFAULT_QUESTION {
        let expected = pictures::describe(&objects[0]);
        let verdict = if answer.trim() == expected {
            "correct"
        } else {
            "WRONG"
        };
        println!("expected \"{expected}\": {verdict}");
    }
    Ok(())
}
