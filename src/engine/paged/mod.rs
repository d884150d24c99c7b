//! Paged KV cache: fixed-size blocks of K/V rows ([`KvBlocks`]), a reference-counted block
//! allocator with prefix caching ([`BlockAllocator`]), content hashes for prompt prefixes
//! ([`prefix`]), and the per-sequence block bookkeeping the scheduler uses ([`BlockManager`]).

mod allocator;
mod manager;
pub mod prefix;
mod storage;

pub use allocator::{BlockAllocator, BlockId};
pub use manager::{BlockManager, SeqBlocks};
pub use storage::{cache_blocks_for_bytes, KvBlocks};

/// MindIE's `cacheBlockSize` default.
pub const DEFAULT_BLOCK_SIZE: usize = 128;
