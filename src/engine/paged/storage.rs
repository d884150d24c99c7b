//! Block storage: per layer, one K and one V buffer of `n_blocks × block_size` rows of
//! `kv_dim` values. In bf16 (f16) mode the rows are stored as bf16 (f16) bit patterns: K and V are
//! already rounded to that precision by the decoder, so this halves memory without changing a
//! single value.

use crate::engine::kernels::attention::paged::KvRows;
use crate::engine::kernels::bf16::{narrow_f16, Precision};
use crate::engine::kernels::runtime::mmap::advise_huge_pages;

enum Rows {
    F32(Vec<f32>),
    Bf16(Vec<u16>),
    F16(Vec<half::f16>),
}

impl Rows {
    fn new(len: usize, p: Precision) -> Self {
        // Zeroed allocations of this size are fresh, untouched mappings: advised now, the pages
        // a sequence first writes arrive as huge pages. Attention reads every cached key of every
        // sequence each step from scattered blocks; with 4 KiB pages that is a TLB miss per key.
        match p {
            Precision::F32 => {
                let mut v = vec![0.0f32; len];
                advise_huge_pages(v.as_mut_ptr().cast(), len * 4);
                Rows::F32(v)
            }
            Precision::Bf16 => {
                let mut v = vec![0u16; len];
                advise_huge_pages(v.as_mut_ptr().cast(), len * 2);
                Rows::Bf16(v)
            }
            Precision::F16 => {
                let mut v = vec![half::f16::ZERO; len];
                advise_huge_pages(v.as_mut_ptr().cast(), len * 2);
                Rows::F16(v)
            }
        }
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            Rows::F32(d) => d[at..at + src.len()].copy_from_slice(src),
            Rows::Bf16(d) => {
                for (o, &x) in d[at..at + src.len()].iter_mut().zip(src) {
                    // Values are bf16-representable: the high half is exact.
                    *o = (x.to_bits() >> 16) as u16;
                }
            }
            // Values are f16-representable: the narrowing is exact.
            Rows::F16(d) => narrow_f16(&mut d[at..at + src.len()], src),
        }
    }

    fn view(&self) -> KvRows<'_> {
        match self {
            Rows::F32(d) => KvRows::F32(d),
            Rows::Bf16(d) => KvRows::Bf16(d),
            Rows::F16(d) => KvRows::F16(d),
        }
    }
}

pub struct KvBlocks {
    pub block_size: usize,
    pub n_blocks: usize,
    pub kv_dim: usize,
    layers: Vec<(Rows, Rows)>,
}

/// Bytes one block takes over all layers (K and V).
pub fn block_bytes(n_layers: usize, kv_dim: usize, block_size: usize, p: Precision) -> usize {
    let elem = match p {
        Precision::F32 => 4,
        Precision::Bf16 | Precision::F16 => 2,
    };
    2 * n_layers * kv_dim * block_size * elem
}

/// How many blocks fit in `bytes`.
pub fn cache_blocks_for_bytes(
    bytes: usize,
    n_layers: usize,
    kv_dim: usize,
    block_size: usize,
    p: Precision,
) -> usize {
    bytes / block_bytes(n_layers, kv_dim, block_size, p).max(1)
}

impl KvBlocks {
    /// Zeroed storage (pages are only touched when written).
    pub fn new(
        n_layers: usize,
        kv_dim: usize,
        block_size: usize,
        n_blocks: usize,
        p: Precision,
    ) -> Self {
        let len = n_blocks * block_size * kv_dim;
        KvBlocks {
            block_size,
            n_blocks,
            kv_dim,
            layers: (0..n_layers)
                .map(|_| (Rows::new(len, p), Rows::new(len, p)))
                .collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        let elem = match self.layers.first().map(|l| &l.0) {
            Some(Rows::F32(_)) => 4,
            _ => 2,
        };
        2 * self.layers.len() * self.n_blocks * self.block_size * self.kv_dim * elem
    }

    /// Write the K and V rows of cache slot `slot` (= block·block_size + offset) of `layer`.
    pub fn write(&mut self, layer: usize, slot: usize, k: &[f32], v: &[f32]) {
        let at = slot * self.kv_dim;
        let (ks, vs) = &mut self.layers[layer];
        ks.write(at, k);
        vs.write(at, v);
    }

    pub fn layer(&self, layer: usize) -> (KvRows<'_>, KvRows<'_>) {
        let (k, v) = &self.layers[layer];
        (k.view(), v.view())
    }
}
