//! Checkpoint tools: write a random-weight checkpoint with a released model's architecture
//! (`qwen3vl make-checkpoint`; how parity is proven without a model hub), and save a float
//! checkpoint as a msModelSlim W8A8 folder (`qwen3vl quantize`).

pub mod quantize_checkpoint;
pub mod random_checkpoint;
