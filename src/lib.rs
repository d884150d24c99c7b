//! Qwen3-VL inference engine for CPUs.
//!
//! * [`engine`] — the model and its compute: config, weights, kernel layer, vision tower, text decoder.
//! * [`media`] — images and video: decoding, resizing, patchifying (Hugging Face processor parity).
//! * [`prompt`] — tokenizer, chat template, placeholder expansion, incremental detokenizer.
//! * [`actors`] — the streaming pipeline stages.
//! * [`bench`](mod@bench) — `qwen3vl bench`: the AISBench-compatible serving benchmark.
//! * [`pipeline`] — the public API: build a pipeline, stream chat/generation events.
//! * [`service`] — the HTTP server (MindIE / vLLM / OpenAI / TGI wire formats).

pub mod actors;
pub mod bench;
pub mod engine;
pub mod logging;
pub mod media;
pub mod pipeline;
pub mod prompt;
pub mod service;
pub mod wire;
