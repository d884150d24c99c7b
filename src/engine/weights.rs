//! Checkpoint folders: `model.safetensors` or shards listed in `model.safetensors.index.json`.
//! Files are memory-mapped; tensors are converted one at a time into the compute layout, so a
//! whole file is never copied.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;

use super::error::{EngineError, Result};
use super::kernels::runtime::mmap::{map_file, release_range};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredDtype {
    F32,
    F16,
    Bf16,
    /// Integer tensors of quantized checkpoints (msModelSlim W8A8: weights, quant_bias,
    /// int64-encoded deq_scale).
    I8,
    I32,
    I64,
}

impl StoredDtype {
    fn size(self) -> usize {
        match self {
            StoredDtype::I64 => 8,
            StoredDtype::F32 | StoredDtype::I32 => 4,
            StoredDtype::F16 | StoredDtype::Bf16 => 2,
            StoredDtype::I8 => 1,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            StoredDtype::F32 | StoredDtype::F16 | StoredDtype::Bf16
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            StoredDtype::F32 => "F32",
            StoredDtype::F16 => "F16",
            StoredDtype::Bf16 => "BF16",
            StoredDtype::I8 => "I8",
            StoredDtype::I32 => "I32",
            StoredDtype::I64 => "I64",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Result<StoredDtype, String>,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A read-only view of every tensor in a checkpoint folder.
pub struct Checkpoint {
    dir: PathBuf,
    files: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
}

/// One tensor, still in its on-disk dtype.
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: StoredDtype,
    pub shape: &'a [usize],
    bytes: &'a [u8],
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        // msModelSlim (v1) writes its shards under this name.
        let quant_index = dir.join("quant_model_weights.safetensors.index.json");
        let file_names: Vec<PathBuf> = if index.exists() {
            shard_files(&index)?
        } else if quant_index.exists() {
            shard_files(&quant_index)?
        } else if single.exists() {
            vec![single]
        } else {
            // Accept any *.safetensors in the folder (some exports use other names).
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|source| EngineError::Io {
                    path: dir.to_path_buf(),
                    source,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(EngineError::Checkpoint {
                    path: dir.to_path_buf(),
                    msg: "no model.safetensors, model.safetensors.index.json or *.safetensors file"
                        .into(),
                });
            }
            found
        };
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, path) in file_names.into_iter().enumerate() {
            let file = File::open(&path).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
            let mmap = map_file(&file).map_err(|source| EngineError::Io {
                path: path.clone(),
                source,
            })?;
            for (name, entry) in parse_header(&path, &mmap, i)? {
                entries.insert(name, entry);
            }
            files.push((path, mmap));
        }
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            files,
            entries,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
            || legacy_name(name).is_some_and(|l| self.entries.contains_key(&l))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|s| s.as_str())
    }

    pub fn get(&self, name: &str) -> Result<TensorView<'_>> {
        let (key, e) = self
            .entries
            .get_key_value(name)
            .or_else(|| legacy_name(name).and_then(|l| self.entries.get_key_value(&l)))
            .ok_or_else(|| EngineError::MissingTensor {
                name: name.to_string(),
                dir: self.dir.clone(),
            })?;
        let dtype = e.dtype.clone().map_err(|dtype| EngineError::Dtype {
            name: name.to_string(),
            dtype,
            expected: "BF16, F16, F32, I8, I32, I64".into(),
        })?;
        Ok(TensorView {
            name: key,
            dtype,
            shape: &e.shape,
            bytes: &self.files[e.file].1[e.start..e.end],
        })
    }

    /// Drop this process's resident pages of a tensor once it has been converted, so loading
    /// does not hold the mapped file and the converted weights in memory at the same time.
    /// Only whole pages inside the tensor are released; the file itself is untouched.
    pub fn release(&self, name: &str) {
        if let Some(e) = self
            .entries
            .get(name)
            .or_else(|| legacy_name(name).and_then(|l| self.entries.get(&l)))
        {
            release_range(&self.files[e.file].1, e.start, e.end);
        }
    }

    /// [`Self::release`] for bytes [from, to) of one tensor's data.
    pub fn release_part(&self, name: &str, from: usize, to: usize) {
        if let Some(e) = self
            .entries
            .get(name)
            .or_else(|| legacy_name(name).and_then(|l| self.entries.get(&l)))
        {
            let end = (e.start + to).min(e.end);
            release_range(&self.files[e.file].1, e.start + from, end);
        }
    }

    /// Fetch a tensor and check its shape.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<TensorView<'_>> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(EngineError::Shape {
                name: name.to_string(),
                got: t.shape.to_vec(),
                expected: expected.to_vec(),
            });
        }
        Ok(t)
    }
}

impl TensorView<'_> {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values as f32 (integer tensors convert numerically).
    pub fn to_f32(&self) -> Vec<f32> {
        let b = self.bytes;
        match self.dtype {
            StoredDtype::I8 => b.iter().map(|&v| v as i8 as f32).collect(),
            StoredDtype::I32 => self.ints().map(|v| v as f32).collect(),
            StoredDtype::I64 => self.ints().map(|v| v as f32).collect(),
            StoredDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StoredDtype::Bf16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
            StoredDtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32())
                .collect(),
        }
    }

    /// Rows [r0, r0 + rows) of a [_, cols] float tensor, appended to `out` as f32.
    pub fn rows_f32(&self, r0: usize, rows: usize, cols: usize, out: &mut Vec<f32>) {
        let es = self.dtype.size();
        let b = &self.bytes[r0 * cols * es..(r0 + rows) * cols * es];
        match self.dtype {
            StoredDtype::F32 => out.extend(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            ),
            StoredDtype::Bf16 => out.extend(
                b.chunks_exact(2)
                    .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            StoredDtype::F16 => out.extend(
                b.chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32()),
            ),
            _ => out.extend(std::iter::repeat_n(f32::NAN, rows * cols)),
        }
    }

    /// Rows [r0, r0 + rows) of a [_, cols] float tensor, appended to `out` as bf16 (f32/f16
    /// sources rounded to nearest-even).
    pub fn rows_bf16(&self, r0: usize, rows: usize, cols: usize, out: &mut Vec<bf16>) {
        if self.dtype == StoredDtype::Bf16 {
            let b = &self.bytes[r0 * cols * 2..(r0 + rows) * cols * 2];
            out.extend(
                b.chunks_exact(2)
                    .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]]))),
            );
        } else {
            let mut f = Vec::with_capacity(rows * cols);
            self.rows_f32(r0, rows, cols, &mut f);
            out.extend(f.into_iter().map(bf16::from_f32));
        }
    }

    /// Rows [r0, r0 + rows) of a [_, cols] float tensor, appended to `out` as f16: an f16 tensor's
    /// bits are copied as stored (no detour through another format), f32/bf16 sources are
    /// rounded to nearest-even as PyTorch's `.to(float16)` does.
    pub fn rows_f16(&self, r0: usize, rows: usize, cols: usize, out: &mut Vec<f16>) {
        if self.dtype == StoredDtype::F16 {
            let b = &self.bytes[r0 * cols * 2..(r0 + rows) * cols * 2];
            out.extend(
                b.chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]]))),
            );
        } else {
            let mut f = Vec::with_capacity(rows * cols);
            self.rows_f32(r0, rows, cols, &mut f);
            let at = out.len();
            out.resize(at + f.len(), f16::ZERO);
            super::kernels::bf16::narrow_f16(&mut out[at..], &f);
        }
    }

    /// Values as f16 ([`Self::rows_f16`] over the whole tensor).
    pub fn to_f16(&self) -> Vec<f16> {
        let n = self.numel();
        let mut out = Vec::with_capacity(n);
        self.rows_f16(0, 1, n, &mut out);
        out
    }

    /// Bytes per stored value.
    pub fn elem_size(&self) -> usize {
        self.dtype.size()
    }

    /// The raw little-endian bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    /// Integer values of an I8/I32/I64 tensor (empty for float tensors).
    fn ints(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        let b = self.bytes;
        match self.dtype {
            StoredDtype::I8 => Box::new(b.iter().map(|&v| v as i8 as i64)),
            StoredDtype::I32 => Box::new(
                b.chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64),
            ),
            StoredDtype::I64 => Box::new(
                b.chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))),
            ),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// An I8 tensor's values.
    pub fn to_i8(&self) -> Result<Vec<i8>> {
        self.expect(&[StoredDtype::I8])?;
        Ok(self.bytes.iter().map(|&v| v as i8).collect())
    }

    /// An I32 tensor's values.
    pub fn to_i32(&self) -> Result<Vec<i32>> {
        self.expect(&[StoredDtype::I32])?;
        Ok(self.ints().map(|v| v as i32).collect())
    }

    /// An I64 tensor's values.
    pub fn to_i64(&self) -> Result<Vec<i64>> {
        self.expect(&[StoredDtype::I64])?;
        Ok(self.ints().collect())
    }

    /// Fails with a typed error unless the tensor has one of `allowed` dtypes.
    pub fn expect(&self, allowed: &[StoredDtype]) -> Result<()> {
        if allowed.contains(&self.dtype) {
            Ok(())
        } else {
            Err(EngineError::Dtype {
                name: self.name.to_string(),
                dtype: self.dtype.name().to_string(),
                expected: allowed
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }

    /// Values as bf16 (f32/f16 sources are rounded to nearest-even).
    pub fn to_bf16(&self) -> Vec<bf16> {
        match self.dtype {
            StoredDtype::Bf16 => self
                .bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            _ => self.to_f32().into_iter().map(bf16::from_f32).collect(),
        }
    }
}

/// Qwen2-VL-style names some re-exports use: `visual.…` and `model.layers.…` instead of the nested
/// `model.visual.…` / `model.language_model.…`.
pub(crate) fn legacy_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("model.visual.") {
        Some(format!("visual.{rest}"))
    } else {
        name.strip_prefix("model.language_model.")
            .map(|rest| format!("model.{rest}"))
    }
}

fn shard_files(index: &Path) -> Result<Vec<PathBuf>> {
    let bad = |msg: String| EngineError::Checkpoint {
        path: index.to_path_buf(),
        msg,
    };
    let text = std::fs::read_to_string(index).map_err(|source| EngineError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("missing `weight_map` object".into()))?;
    let mut names: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map entry for `{tensor}` is not a string")))?;
        if file.contains('/') || file.contains("..") {
            return Err(bad(format!(
                "shard name `{file}` must be a plain file name"
            )));
        }
        if !names.iter().any(|n| n == file) {
            names.push(file.to_string());
        }
    }
    names.sort();
    let dir = index.parent().unwrap_or(Path::new("."));
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

/// Parse and validate a safetensors header: 8-byte little-endian length, JSON, then data whose
/// offsets must lie inside the file and match dtype × shape.
fn parse_header(path: &Path, bytes: &[u8], file: usize) -> Result<Vec<(String, Entry)>> {
    let bad = |msg: String| EngineError::Checkpoint {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.len() < 8 {
        return Err(bad(format!(
            "file is {} bytes, too short for a safetensors header (truncated?)",
            bytes.len()
        )));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    if n > bytes.len() - 8 {
        return Err(bad(format!(
            "header claims {n} bytes but the file has only {} (truncated?)",
            bytes.len() - 8
        )));
    }
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n])
            .map_err(|e| bad(format!("header is not valid JSON: {e}")))?;
    let data_start = 8 + n;
    let data_len = bytes.len() - data_start;
    let mut out = Vec::with_capacity(header.len());
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let dtype_str = info
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad(format!("tensor `{name}` has no dtype")))?;
        let dtype = match dtype_str {
            "F32" => Ok(StoredDtype::F32),
            "F16" => Ok(StoredDtype::F16),
            "BF16" => Ok(StoredDtype::Bf16),
            "I8" => Ok(StoredDtype::I8),
            "I32" => Ok(StoredDtype::I32),
            "I64" => Ok(StoredDtype::I64),
            other => Err(other.to_string()),
        };
        let shape: Vec<usize> = info
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .ok_or_else(|| bad(format!("tensor `{name}` has no valid shape")))?;
        let offsets: Vec<usize> = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect())
            .filter(|o: &Vec<usize>| o.len() == 2)
            .ok_or_else(|| bad(format!("tensor `{name}` has no valid data_offsets")))?;
        let (start, end) = (offsets[0], offsets[1]);
        if start > end || end > data_len {
            return Err(bad(format!(
                "tensor `{name}` spans bytes {start}..{end} but the data section has {data_len} bytes (truncated?)"
            )));
        }
        if let Ok(dt) = dtype {
            let want = shape
                .iter()
                .try_fold(dt.size(), |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| bad(format!("tensor `{name}` shape overflows")))?;
            if want != end - start {
                return Err(bad(format!(
                    "tensor `{name}` needs {want} bytes for {dtype_str}{shape:?} but has {}",
                    end - start
                )));
            }
        }
        out.push((
            name,
            Entry {
                file,
                dtype,
                shape,
                start: data_start + start,
                end: data_start + end,
            },
        ));
    }
    Ok(out)
}
