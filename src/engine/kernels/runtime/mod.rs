//! What runs where, and on what: the machine's capabilities ([`caps`]), the `QWEN3VL_*`
//! settings ([`env`](mod@env)), the kernel plan resolved from them ([`plan`]), and what every kernel
//! runs on — the compute pool ([`pool`], pinned by [`affinity`]), ISA dispatch ([`simd`]), AMX tile configuration
//! ([`amx`]), aligned buffers ([`aligned`]), file mappings / huge pages ([`mmap`]) and the
//! allocator's arenas ([`malloc`]).

pub mod affinity;
pub mod aligned;
pub mod amx;
pub mod caps;
pub mod env;
pub mod malloc;
pub mod mmap;
pub mod plan;
pub mod pool;
mod resolve;
pub mod simd;

#[cfg(test)]
mod tests;
