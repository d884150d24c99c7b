//! Demo: an image and a question through preprocessing, the vision tower and the decoder, with the
//! answer streamed token by token. The model is a random-weight checkpoint, so the answer is
//! noise — the point is the path, not the words.
//!
//! `cargo run --release --example demo -- <model-dir> [question]`

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use qwen3vl::engine::model::argmax;
use qwen3vl::engine::{LoadOptions, MultimodalInput, Qwen3VlModel};
use qwen3vl::media::MediaLimits;
use qwen3vl::prompt::{ChatMessage, IncrementalDetokenizer, Processor, Tokenizer};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_dir = PathBuf::from(args.next().context("usage: demo <model-dir> [question]")?);
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

    let limits = MediaLimits {
        media_root: Some(work.path().to_path_buf()),
        ..Default::default()
    };
    let processor = Processor::from_model_dir(&model_dir, limits)?;
    let messages: Vec<ChatMessage> = serde_json::from_value(serde_json::json!([{
        "role": "user",
        "content": [
            {"type": "image_url", "image_url": {"url": format!("file://{}", image.display())}},
            {"type": "text", "text": question},
        ]
    }]))?;
    let inputs = processor.process(&messages)?;
    eprintln!(
        "prompt: {} tokens, image grid {:?}",
        inputs.input_ids.len(),
        inputs.image_grid_thw
    );

    let model = Qwen3VlModel::load(&model_dir, LoadOptions::default())?;
    let tokenizer = Tokenizer::from_file(&model_dir.join("tokenizer.json"))?;
    let mut detok = IncrementalDetokenizer::new(tokenizer, true);
    let input = MultimodalInput::from(inputs);
    let t0 = std::time::Instant::now();
    let mut cache = model.new_cache();
    let first = model.prefill(&mut cache, &input, false)?;
    let mut token = argmax(&first.logits) as u32;
    let ttft = t0.elapsed();
    let mut out = std::io::stdout().lock();
    write!(out, "{question}\n> ")?;
    let mut n = 0;
    while n < 48 && token != 151_645 && token != 151_643 {
        write!(out, "{}", detok.push(token)?)?;
        out.flush()?;
        n += 1;
        let logits = model.decode(&mut cache, token, first.positions.rope_delta)?;
        token = argmax(&logits) as u32;
    }
    writeln!(out, "{}", detok.flush()?)?;
    eprintln!(
        "time to first token {:.3}s, {n} tokens in {:.3}s",
        ttft.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
