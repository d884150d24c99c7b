//! Small named-tensor files (safetensors) for the `forward` / `preprocess` contracts: i64 and f32
//! tensors in, f32 and i64 tensors out.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::error::{EngineError, Result};

/// A tensor read from a file: shape plus values widened to f32 or i64.
#[derive(Debug, Clone)]
pub enum TensorData {
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
}

impl TensorData {
    pub fn shape(&self) -> &[usize] {
        match self {
            TensorData::F32(s, _) | TensorData::I64(s, _) => s,
        }
    }
}

/// All tensors of a file, by name.
pub struct TensorFile {
    pub tensors: BTreeMap<String, TensorData>,
}

impl TensorFile {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| EngineError::Checkpoint {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        let mut tensors = BTreeMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let d = view.data();
            let t = match view.dtype() {
                Dtype::F32 => TensorData::F32(
                    shape,
                    d.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I64 => TensorData::I64(
                    shape,
                    d.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect(),
                ),
                Dtype::I32 => TensorData::I64(
                    shape,
                    d.chunks_exact(4)
                        .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                        .collect(),
                ),
                other => {
                    return Err(EngineError::input(format!(
                        "{}: tensor `{name}` has dtype {other:?}; expected F32 or I64",
                        path.display()
                    )))
                }
            };
            tensors.insert(name, t);
        }
        Ok(TensorFile { tensors })
    }

    /// An i64 tensor of the given rank (`None` when absent).
    pub fn i64(&self, name: &str, rank: usize) -> Result<Option<(Vec<usize>, Vec<i64>)>> {
        match self.tensors.get(name) {
            None => Ok(None),
            Some(TensorData::I64(s, v)) if s.len() == rank => Ok(Some((s.clone(), v.clone()))),
            Some(t) => Err(EngineError::input(format!(
                "`{name}` must be an I64 tensor of rank {rank}, got {} {:?}",
                if matches!(t, TensorData::F32(..)) {
                    "F32"
                } else {
                    "I64"
                },
                t.shape()
            ))),
        }
    }

    /// An f32 tensor of the given rank (`None` when absent).
    pub fn f32(&self, name: &str, rank: usize) -> Result<Option<(Vec<usize>, Vec<f32>)>> {
        match self.tensors.get(name) {
            None => Ok(None),
            Some(TensorData::F32(s, v)) if s.len() == rank => Ok(Some((s.clone(), v.clone()))),
            Some(t) => Err(EngineError::input(format!(
                "`{name}` must be an F32 tensor of rank {rank}, got {} {:?}",
                if matches!(t, TensorData::F32(..)) {
                    "F32"
                } else {
                    "I64"
                },
                t.shape()
            ))),
        }
    }
}

/// Tensors to write.
#[derive(Default)]
pub struct TensorWriter {
    entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

impl TensorWriter {
    pub fn f32(&mut self, name: &str, shape: &[usize], v: &[f32]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries
            .push((name.into(), Dtype::F32, shape.to_vec(), bytes));
    }

    pub fn i64(&mut self, name: &str, shape: &[usize], v: &[i64]) {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.entries
            .push((name.into(), Dtype::I64, shape.to_vec(), bytes));
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let views = self
            .entries
            .iter()
            .map(|(n, d, s, b)| {
                TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| EngineError::input(format!("tensor `{n}`: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let bytes =
            safetensors::serialize(views, None).map_err(|e| EngineError::input(e.to_string()))?;
        std::fs::write(path, bytes).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
