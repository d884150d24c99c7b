//! Token embeddings read straight from the memory-mapped checkpoint: a lookup touches only the
//! rows it needs, so the [vocab, hidden] table (0.6 GB for 2B) is never copied into the heap —
//! with a tied LM head the packed GEMM copy is then the only full copy in memory.

use std::sync::Arc;

use super::error::{EngineError, Result};
use super::kernels::bf16::Precision;
use super::weights::{Checkpoint, StoredDtype};

pub struct Embedding {
    ckpt: Arc<Checkpoint>,
    name: String,
    vocab: usize,
    hidden: usize,
    precision: Precision,
}

impl Embedding {
    pub fn new(
        ckpt: Arc<Checkpoint>,
        name: &str,
        vocab: usize,
        hidden: usize,
        precision: Precision,
    ) -> Result<Self> {
        let t = ckpt.get_shaped(name, &[vocab, hidden])?;
        t.expect(&[StoredDtype::F32, StoredDtype::Bf16, StoredDtype::F16])?;
        let name = t.name.to_string();
        Ok(Embedding {
            ckpt,
            name,
            vocab,
            hidden,
            precision,
        })
    }

    /// Appends the embeddings of `ids` to `out`, in the model precision.
    pub fn lookup(&self, ids: &[u32], out: &mut Vec<f32>) -> Result<()> {
        let t = self.ckpt.get(&self.name)?;
        let h = self.hidden;
        out.reserve(ids.len() * h);
        for &id in ids {
            let id = id as usize;
            if id >= self.vocab {
                return Err(EngineError::input(format!(
                    "token id {id} is outside the vocabulary ({})",
                    self.vocab
                )));
            }
            let at = out.len();
            t.rows_f32(id, 1, h, out);
            self.precision.round_slice(&mut out[at..]);
        }
        Ok(())
    }
}
