//! A contiguous per-sequence KV cache: for each layer, K and V rows of n_kv_heads·head_dim values.

pub struct KvCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    kv_dim: usize,
    len: usize,
}

impl KvCache {
    pub fn new(n_layers: usize, kv_dim: usize) -> Self {
        KvCache {
            layers: (0..n_layers).map(|_| (Vec::new(), Vec::new())).collect(),
            kv_dim,
            len: 0,
        }
    }

    /// Tokens stored (identical for every layer once a forward pass has finished).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        for (k, v) in &mut self.layers {
            k.clear();
            v.clear();
        }
        self.len = 0;
    }

    /// Append rows for `layer` and return all K and V rows of that layer.
    pub fn append(&mut self, layer: usize, k: &[f32], v: &[f32]) -> (&[f32], &[f32]) {
        let (ks, vs) = &mut self.layers[layer];
        ks.extend_from_slice(k);
        vs.extend_from_slice(v);
        (ks, vs)
    }

    /// Record that a forward pass of `n` new tokens has been appended to every layer.
    pub fn advance(&mut self, n: usize) {
        self.len += n;
        debug_assert!(self
            .layers
            .iter()
            .all(|(k, _)| k.len() == self.len * self.kv_dim));
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|(k, v)| (k.len() + v.len()) * 4)
            .sum()
    }
}
