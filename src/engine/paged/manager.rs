//! Per-sequence block tables on top of the allocator: prefix matching, growth, prefix
//! registration of computed blocks, release.

use super::allocator::{BlockAllocator, BlockId};
use super::prefix::block_hash;

/// The blocks of one sequence and the prefix hashes of its full, computed blocks.
#[derive(Debug, Default, Clone)]
pub struct SeqBlocks {
    pub table: Vec<BlockId>,
    /// `hashes[i]` = chained hash of blocks `0..=i` (only for blocks whose content is computed).
    pub hashes: Vec<u128>,
}

pub struct BlockManager {
    pub alloc: BlockAllocator,
    pub block_size: usize,
}

impl BlockManager {
    pub fn new(n_blocks: usize, block_size: usize, prefix_caching: bool) -> Self {
        BlockManager {
            alloc: BlockAllocator::new(n_blocks, prefix_caching),
            block_size,
        }
    }

    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.block_size)
    }

    /// Attach the cached blocks of the longest cached prefix of `keys` to an empty sequence.
    /// At least one token is left to compute (its logits are needed). Returns tokens covered.
    pub fn match_prefix(&mut self, seq: &mut SeqBlocks, keys: &[u64]) -> usize {
        debug_assert!(seq.table.is_empty());
        if !self.alloc.prefix_caching() || keys.is_empty() {
            return 0;
        }
        let bs = self.block_size;
        let max_blocks = (keys.len() - 1) / bs;
        let mut prev = 0u128;
        for i in 0..max_blocks {
            let h = block_hash(prev, &keys[i * bs..(i + 1) * bs]);
            match self.alloc.lookup(h) {
                Some(b) => {
                    seq.table.push(b);
                    seq.hashes.push(h);
                    prev = h;
                }
                None => break,
            }
        }
        seq.table.len() * bs
    }

    /// Free blocks needed to grow `seq` to hold `tokens`.
    pub fn missing(&self, seq: &SeqBlocks, tokens: usize) -> usize {
        self.blocks_for(tokens).saturating_sub(seq.table.len())
    }

    /// Grow the table to hold `tokens`; false (and nothing allocated) when too few are free.
    pub fn ensure(&mut self, seq: &mut SeqBlocks, tokens: usize) -> bool {
        let need = self.missing(seq, tokens);
        if need > self.alloc.num_free() {
            return false;
        }
        for _ in 0..need {
            let b = self.alloc.allocate().expect("counted free blocks");
            seq.table.push(b);
        }
        true
    }

    /// Register every full block among the first `computed` tokens under its prefix hash.
    pub fn commit(&mut self, seq: &mut SeqBlocks, keys: &[u64], computed: usize) {
        if !self.alloc.prefix_caching() {
            return;
        }
        let bs = self.block_size;
        let full = (computed / bs).min(seq.table.len());
        while seq.hashes.len() < full {
            let i = seq.hashes.len();
            let prev = if i == 0 { 0 } else { seq.hashes[i - 1] };
            let h = block_hash(prev, &keys[i * bs..(i + 1) * bs]);
            self.alloc.register(seq.table[i], h);
            seq.hashes.push(h);
        }
    }

    /// Give back the blocks past the first `tokens` tokens (the tail a rejected draft needed).
    /// Blocks registered in the prefix cache are never past `tokens`: only committed tokens are.
    pub fn shrink(&mut self, seq: &mut SeqBlocks, tokens: usize) {
        let keep = self.blocks_for(tokens).max(seq.hashes.len());
        while seq.table.len() > keep {
            let b = seq.table.pop().expect("longer than keep");
            self.alloc.release(b);
        }
    }

    /// Return all blocks (tail first, so the tail is evicted before the shared head).
    pub fn release(&mut self, seq: &mut SeqBlocks) {
        for &b in seq.table.iter().rev() {
            self.alloc.release(b);
        }
        seq.table.clear();
        seq.hashes.clear();
    }

    pub fn num_free(&self) -> usize {
        self.alloc.num_free()
    }

    pub fn total(&self) -> usize {
        self.alloc.total()
    }
}
