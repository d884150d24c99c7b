//! What runs where: the machine's capabilities ([`caps`]), the `QWEN3VL_*` settings ([`env`])
//! and the kernel plan resolved from them ([`plan`]).

pub mod caps;
pub mod env;
pub mod plan;
mod resolve;

#[cfg(test)]
mod tests;
