//! Reference-counted block allocator with prefix caching (vLLM v1 style).
//!
//! A full block can be registered under the hash of its whole prefix. When its last user frees
//! it, it stays in the free queue *and* in the hash table, so a later request with the same
//! prefix takes it back without recomputing; only when the block is handed out for new content
//! (least recently freed first) is its hash forgotten.

use std::collections::{BTreeSet, HashMap};

pub type BlockId = u32;

pub struct BlockAllocator {
    ref_count: Vec<u32>,
    hash: Vec<Option<u128>>,
    cached: HashMap<u128, BlockId>,
    /// Free blocks by the time they were freed (oldest first = evicted first).
    free: BTreeSet<(u64, BlockId)>,
    freed_at: Vec<u64>,
    clock: u64,
    prefix_caching: bool,
}

impl BlockAllocator {
    pub fn new(n_blocks: usize, prefix_caching: bool) -> Self {
        BlockAllocator {
            ref_count: vec![0; n_blocks],
            hash: vec![None; n_blocks],
            cached: HashMap::new(),
            free: (0..n_blocks as BlockId).map(|b| (b as u64, b)).collect(),
            freed_at: (0..n_blocks as u64).collect(),
            clock: n_blocks as u64,
            prefix_caching,
        }
    }

    pub fn total(&self) -> usize {
        self.ref_count.len()
    }

    /// Blocks not referenced by any sequence (cached ones included: they can be evicted).
    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Blocks holding a registered prefix (referenced or not).
    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    pub fn prefix_caching(&self) -> bool {
        self.prefix_caching
    }

    /// Take a block for new content (evicting its cached prefix, if any).
    pub fn allocate(&mut self) -> Option<BlockId> {
        let (stamp, b) = *self.free.iter().next()?;
        self.free.remove(&(stamp, b));
        if let Some(h) = self.hash[b as usize].take() {
            if self.cached.get(&h) == Some(&b) {
                self.cached.remove(&h);
            }
        }
        self.ref_count[b as usize] = 1;
        Some(b)
    }

    /// Drop one reference.
    pub fn release(&mut self, b: BlockId) {
        let rc = &mut self.ref_count[b as usize];
        debug_assert!(*rc > 0, "double free of block {b}");
        *rc = rc.saturating_sub(1);
        if *rc == 0 {
            self.clock += 1;
            self.freed_at[b as usize] = self.clock;
            self.free.insert((self.clock, b));
        }
    }

    /// A cached block with this prefix hash, now referenced once more.
    pub fn lookup(&mut self, h: u128) -> Option<BlockId> {
        if !self.prefix_caching {
            return None;
        }
        let b = *self.cached.get(&h)?;
        if self.ref_count[b as usize] == 0 {
            self.free.remove(&(self.freed_at[b as usize], b));
        }
        self.ref_count[b as usize] += 1;
        Some(b)
    }

    /// Record that block `b` (full, computed) holds the prefix with hash `h`.
    pub fn register(&mut self, b: BlockId, h: u128) {
        if !self.prefix_caching || self.hash[b as usize].is_some() {
            return;
        }
        // A concurrent identical prefix may already be cached under another block: keep one.
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(h) {
            e.insert(b);
            self.hash[b as usize] = Some(h);
        }
    }

    pub fn ref_count(&self, b: BlockId) -> u32 {
        self.ref_count[b as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_cached_blocks_are_reused_until_evicted() {
        let mut a = BlockAllocator::new(3, true);
        let b0 = a.allocate().unwrap();
        a.register(b0, 42);
        a.release(b0);
        assert_eq!(a.num_free(), 3);
        assert_eq!(a.lookup(42), Some(b0));
        assert_eq!(a.num_free(), 2);
        a.release(b0);
        // Eviction order: the two never-used blocks first, then b0 (its hash goes with it).
        let x = a.allocate().unwrap();
        let y = a.allocate().unwrap();
        assert!(x != b0 && y != b0);
        assert_eq!(a.allocate(), Some(b0));
        assert_eq!(a.lookup(42), None);
        assert_eq!(a.allocate(), None);
    }
}
