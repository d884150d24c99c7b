//! Checkpoint files → the project's safetensors header parser and weight loader.
//!
//! The bytes are written to a tmpfs file and opened the way a model folder is: memory-mapped
//! by `Checkpoint::open`, then every tensor fetched and converted through the `Loader`, and
//! the same file read by `TensorFile` (the `forward` / `preprocess` contracts). Odd first
//! byte: the rest is a `model.safetensors.index.json` naming shards instead. Properties:
//! * nothing panics and nothing allocates beyond the file's size: bad files are typed errors;
//! * every tensor of an opened checkpoint is either readable, with exactly dtype × shape bytes
//!   and as many values, or refused for its dtype;
//! * the loader refuses a wrong shape and integer tensors where floats are needed;
//! * whatever the reference `safetensors` crate accepts, the checkpoint reader accepts too,
//!   with the same shapes and bytes for every dtype it supports.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use qwen3vl::engine::loader::Loader;
use qwen3vl::engine::tensor_file::{TensorData, TensorFile};
use qwen3vl::engine::weights::Checkpoint;
use qwen3vl::engine::{EngineError, Precision};

const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";
/// The one shard an index may name that exists: a valid file with one F32 tensor.
const SHARD: &str = "shard-1.safetensors";

/// A per-process folder on tmpfs (the fuzzer may run several processes with `-fork`).
fn dir() -> &'static Path {
    static D: OnceLock<PathBuf> = OnceLock::new();
    D.get_or_init(|| {
        let root = Path::new("/dev/shm");
        let root = if root.is_dir() {
            root.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let d = root.join(format!("qwen3vl-fuzz-st-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp folder");
        let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut shard = (header.len() as u64).to_le_bytes().to_vec();
        shard.extend_from_slice(header);
        shard.extend_from_slice(&[0, 0, 128, 63, 0, 0, 0, 64]);
        std::fs::write(d.join(SHARD), shard).expect("shard");
        d
    })
}

fn dtype_size(name: &str) -> Option<usize> {
    Some(match name {
        "F32" | "I32" => 4,
        "F16" | "BF16" => 2,
        "I8" => 1,
        "I64" => 8,
        _ => return None,
    })
}

fn loader(ckpt: &Checkpoint, precision: Precision) -> Loader<'_> {
    Loader {
        ckpt,
        precision,
        backend: None,
        quantize_text: false,
        quantize_vision: false,
        quant: None,
    }
}

/// Every tensor of an opened checkpoint, through the accessors the model loader uses.
fn tensors(ckpt: &Checkpoint) {
    let names: Vec<String> = ckpt.names().map(str::to_string).collect();
    for (i, name) in names.iter().enumerate() {
        assert!(ckpt.contains(name));
        let view = match ckpt.get(name) {
            Ok(v) => v,
            Err(EngineError::Dtype { .. }) => continue,
            Err(e) => panic!("a listed tensor failed with {e}"),
        };
        let numel = view.numel();
        assert_eq!(view.bytes().len(), numel * view.elem_size());
        assert_eq!(view.to_f32().len(), numel);
        let shape = view.shape.to_vec();
        let float = view.dtype.is_float();
        let mut wrong = shape.clone();
        wrong.push(1);
        assert!(matches!(
            ckpt.get_shaped(name, &wrong),
            Err(EngineError::Shape { .. })
        ));
        let precision = [Precision::F32, Precision::Bf16, Precision::F16][i % 3];
        match loader(ckpt, precision).vector(name, &shape) {
            Ok(v) => {
                assert!(float);
                assert_eq!(v.len(), numel);
            }
            Err(e) => assert!(!float, "a float tensor was refused: {e}"),
        }
        if float {
            assert!(loader(ckpt, precision).store(name, &shape).is_ok());
        }
    }
}

/// The reference parser's verdict must not be stricter than ours.
fn agrees_with_reference(bytes: &[u8], ckpt: Option<&Checkpoint>) {
    let Ok(st) = safetensors::SafeTensors::deserialize(bytes) else {
        return;
    };
    let ckpt = ckpt.expect("the reference parser accepted a file the checkpoint reader refused");
    for (name, t) in st.tensors() {
        let Some(size) = dtype_size(&format!("{:?}", t.dtype())) else {
            continue;
        };
        let v = ckpt.get(&name).expect("a tensor the reference reads");
        assert_eq!(v.shape, t.shape());
        assert_eq!(v.bytes(), t.data());
        assert_eq!(v.elem_size(), size);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let d = dir();
    for f in [SINGLE, INDEX] {
        let _ = std::fs::remove_file(d.join(f));
    }
    let name = if mode % 2 == 1 { INDEX } else { SINGLE };
    std::fs::write(d.join(name), rest).expect("tmpfs write");
    let ckpt = match Checkpoint::open(d) {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(!e.to_string().is_empty());
            None
        }
    };
    if let Some(c) = &ckpt {
        tensors(c);
    }
    if name == SINGLE {
        agrees_with_reference(rest, ckpt.as_ref());
        if let Ok(tf) = TensorFile::read(&d.join(SINGLE)) {
            for t in tf.tensors.values() {
                let n: usize = t.shape().iter().product();
                let len = match t {
                    TensorData::F32(_, v) => v.len(),
                    TensorData::I64(_, v) => v.len(),
                };
                assert_eq!(len, n);
            }
        }
    }
});
