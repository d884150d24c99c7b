//! Benchmark datasets (spec §3.1, §3.5): AISBench `mm_custom` JSONL and the TextVQA layout
//! (`textvqa_val.jsonl` + `textvqa_val_annotations.json`), and the request content built
//! from a sample (media parts first, then the text, as AISBench's `MMPromptTemplate`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::vqa::GtAnswer;
use super::{BenchError, Result};

/// The TextVQA prompt suffix of `textvqa_gen[_base64].py`.
pub const TEXTVQA_SUFFIX: &str = " Answer the question using a single word or phrase.";
/// AISBench `MMCustomDataset.load(num_frames=5)` default.
pub const DEFAULT_NUM_FRAMES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
}

impl MediaKind {
    fn parse(s: &str) -> Option<MediaKind> {
        match s {
            "image" => Some(MediaKind::Image),
            "video" => Some(MediaKind::Video),
            "audio" => Some(MediaKind::Audio),
            _ => None,
        }
    }
}

/// Which on-disk layout a dataset file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetFormat {
    /// Decide from the first line: `type` + `path` → mm_custom, `question_id` + `image` → TextVQA.
    Auto,
    MmCustom,
    Textvqa,
}

/// One benchmark sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// `question_id` (TextVQA) or the 1-based line number (mm_custom).
    pub id: String,
    pub kind: MediaKind,
    /// Media files, made absolute.
    pub paths: Vec<PathBuf>,
    /// The text part sent to the model (question + the dataset's prompt suffix).
    pub prompt: String,
    /// Ground-truth answers (empty if the dataset has none).
    pub answers: Vec<GtAnswer>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Dataset {
    pub format: DatasetFormat,
    pub samples: Vec<Sample>,
}

impl Dataset {
    /// Whether every sample has ground-truth answers (needed for accuracy mode).
    pub fn has_answers(&self) -> bool {
        !self.samples.is_empty() && self.samples.iter().all(|s| !s.answers.is_empty())
    }
}

fn derr(path: &Path, line: usize, message: impl Into<String>) -> BenchError {
    BenchError::Dataset {
        path: path.display().to_string(),
        line,
        message: message.into(),
    }
}

/// Non-blank JSONL lines as (1-based line number, JSON object).
fn read_jsonl(path: &Path) -> Result<Vec<(usize, serde_json::Map<String, Value>)>> {
    let text = std::fs::read_to_string(path).map_err(|e| BenchError::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(m)) => out.push((n, m)),
            Ok(_) => return Err(derr(path, n, "expected a JSON object")),
            Err(e) => return Err(derr(path, n, format!("invalid JSON: {e}"))),
        }
    }
    if out.is_empty() {
        return Err(derr(path, 0, "the dataset has no samples"));
    }
    Ok(out)
}

/// A media path made absolute: as given if absolute or present relative to the working
/// directory, else relative to the dataset file's directory.
fn resolve(dataset: &Path, p: &str) -> PathBuf {
    let raw = PathBuf::from(p.strip_prefix("file://").unwrap_or(p));
    let abs = if raw.is_absolute() {
        raw
    } else if raw.exists() {
        std::env::current_dir().map(|d| d.join(&raw)).unwrap_or(raw)
    } else {
        dataset.parent().unwrap_or(Path::new(".")).join(raw)
    };
    std::path::absolute(&abs).unwrap_or(abs)
}

/// Loads a dataset in the given (or detected) format.
pub fn load(path: &Path, format: DatasetFormat) -> Result<Dataset> {
    let lines = read_jsonl(path)?;
    let format = match format {
        DatasetFormat::Auto => {
            let first = &lines[0].1;
            if first.contains_key("type") && first.contains_key("path") {
                DatasetFormat::MmCustom
            } else if first.contains_key("question_id") && first.contains_key("image") {
                DatasetFormat::Textvqa
            } else {
                return Err(derr(
                    path,
                    lines[0].0,
                    "cannot tell the format: expected mm_custom (`type`, `path`) or TextVQA \
                     (`question_id`, `image`); pass --dataset-format",
                ));
            }
        }
        f => f,
    };
    let samples = match format {
        DatasetFormat::MmCustom => mm_custom(path, &lines)?,
        _ => textvqa(path, &lines)?,
    };
    Ok(Dataset { format, samples })
}

fn mm_custom(
    path: &Path,
    lines: &[(usize, serde_json::Map<String, Value>)],
) -> Result<Vec<Sample>> {
    let mut out = Vec::with_capacity(lines.len());
    for (n, obj) in lines {
        let n = *n;
        let kind = match obj.get("type") {
            Some(Value::String(s)) => MediaKind::parse(s).ok_or_else(|| {
                derr(
                    path,
                    n,
                    format!("`type` must be image, video or audio, got {s:?}"),
                )
            })?,
            _ => return Err(derr(path, n, "missing string field `type`")),
        };
        let paths = match obj.get("path") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|s| resolve(path, s))
                        .ok_or_else(|| derr(path, n, "`path` entries must be strings"))
                })
                .collect::<Result<Vec<_>>>()?,
            Some(Value::String(s)) => vec![resolve(path, s)],
            _ => return Err(derr(path, n, "`path` must be a non-empty list of files")),
        };
        let question = match obj.get("question") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(derr(path, n, "missing string field `question`")),
        };
        let answers = match obj.get("answer") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => GtAnswer::from_strings(&[s]),
            Some(Value::Array(a)) => {
                let strs: Vec<&str> = a
                    .iter()
                    .map(|v| v.as_str())
                    .collect::<Option<_>>()
                    .ok_or_else(|| derr(path, n, "`answer` list entries must be strings"))?;
                GtAnswer::from_strings(&strs)
            }
            Some(_) => {
                return Err(derr(
                    path,
                    n,
                    "`answer` must be a string or list of strings",
                ))
            }
        };
        let id = match obj.get("id").or_else(|| obj.get("question_id")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(x)) => x.to_string(),
            _ => n.to_string(),
        };
        out.push(Sample {
            id,
            kind,
            paths,
            prompt: question,
            answers,
        });
    }
    Ok(out)
}

/// `<dir>/<name up to the first '.'>_annotations.json` (`TEXTVQADataset.load`).
pub fn textvqa_annotations_path(questions: &Path) -> PathBuf {
    let name = questions
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name.split('.').next().unwrap_or("").to_string();
    questions
        .parent()
        .unwrap_or(Path::new(""))
        .join(format!("{stem}_annotations.json"))
}

fn id_key(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn textvqa(path: &Path, lines: &[(usize, serde_json::Map<String, Value>)]) -> Result<Vec<Sample>> {
    let ann_path = textvqa_annotations_path(path);
    let text = std::fs::read_to_string(&ann_path).map_err(|e| BenchError::io(&ann_path, e))?;
    let ann: Value = serde_json::from_str(&text)
        .map_err(|e| derr(&ann_path, e.line(), format!("invalid JSON: {e}")))?;
    let list = ann
        .get("annotations")
        .and_then(Value::as_array)
        .ok_or_else(|| derr(&ann_path, 0, "missing `annotations` list"))?;
    let mut gt = std::collections::HashMap::new();
    for (i, item) in list.iter().enumerate() {
        let qid = item
            .get("question_id")
            .and_then(id_key)
            .ok_or_else(|| derr(&ann_path, 0, format!("annotation {i} has no question_id")))?;
        let answers = item
            .get("answers")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                derr(
                    &ann_path,
                    0,
                    format!("annotation {qid} has no `answers` list"),
                )
            })?;
        let mut parsed = Vec::with_capacity(answers.len());
        for (j, a) in answers.iter().enumerate() {
            parsed.push(match a {
                Value::Object(m) => {
                    let answer = m.get("answer").and_then(Value::as_str).ok_or_else(|| {
                        derr(
                            &ann_path,
                            0,
                            format!("annotation {qid}: answer {j} has no text"),
                        )
                    })?;
                    let mut rest = m.clone();
                    rest.remove("answer");
                    GtAnswer {
                        answer: answer.to_string(),
                        identity: Value::Object(rest),
                    }
                }
                Value::String(s) => GtAnswer {
                    answer: s.clone(),
                    identity: Value::from(j),
                },
                _ => {
                    return Err(derr(
                        &ann_path,
                        0,
                        format!("annotation {qid}: bad answer {j}"),
                    ))
                }
            });
        }
        gt.insert(qid, parsed);
    }
    let mut out = Vec::with_capacity(lines.len());
    for (n, obj) in lines {
        let n = *n;
        let qid = obj
            .get("question_id")
            .and_then(id_key)
            .ok_or_else(|| derr(path, n, "missing `question_id`"))?;
        let image = obj
            .get("image")
            .and_then(Value::as_str)
            .ok_or_else(|| derr(path, n, "missing string field `image`"))?;
        let question = obj
            .get("question")
            .and_then(Value::as_str)
            .ok_or_else(|| derr(path, n, "missing string field `question`"))?;
        let answers = gt.get(&qid).cloned().ok_or_else(|| {
            derr(
                path,
                n,
                format!("question_id {qid} is not in {}", ann_path.display()),
            )
        })?;
        out.push(Sample {
            id: qid,
            kind: MediaKind::Image,
            paths: vec![resolve(path, image)],
            prompt: format!("{question}{TEXTVQA_SUFFIX}"),
            answers,
        });
    }
    Ok(out)
}

/// How media reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MediaMode {
    /// `file:///abs/path` (AISBench `mm_type="path"` with the `file://{image}` template).
    Path,
    /// Data URIs with the file bytes (AISBench `mm_type="base64"`).
    Base64,
}

/// One part of a request's user message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    Image(String),
    Video(String),
    Audio(String),
}

impl Part {
    pub fn is_media(&self) -> bool {
        !matches!(self, Part::Text(_))
    }
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| BenchError::io(p, e))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn image_mime(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

fn ext(p: &Path) -> String {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default()
}

/// `np.linspace(0, total - 1, num, dtype=int)`: the frame indices AISBench samples.
pub fn frame_indices(total: usize, num: usize) -> Vec<usize> {
    if total == 0 || num == 0 {
        return Vec::new();
    }
    if num == 1 {
        return vec![0];
    }
    let last = (total - 1) as f64;
    (0..num)
        .map(|i| {
            let v = if i == num - 1 {
                last
            } else {
                i as f64 * (last / (num - 1) as f64)
            };
            v.floor() as usize
        })
        .collect()
}

fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| BenchError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(ext(p).as_str(), "jpg" | "jpeg" | "png"))
        .collect();
    files.sort();
    Ok(files)
}

fn video_base64(p: &Path, num_frames: usize) -> Result<String> {
    if p.is_dir() {
        // Pre-extracted frames: AISBench's frame list (vLLM `data:video/jpeg;base64,f1,f2,...`).
        let files = image_files(p)?;
        if files.is_empty() {
            return Err(BenchError::Config(format!(
                "{}: the frame directory holds no .jpg/.png files",
                p.display()
            )));
        }
        let mut frames = Vec::new();
        for i in frame_indices(files.len(), num_frames.min(files.len())) {
            frames.push(b64(&read(&files[i])?));
        }
        return Ok(format!("data:video/jpeg;base64,{}", frames.join(",")));
    }
    // A video file travels whole (MindIE accepts `data:video/mp4;base64,`; decoding frames
    // needs the media decoder).
    let mime = match ext(p).as_str() {
        "avi" => "video/x-msvideo",
        "wmv" => "video/x-ms-wmv",
        _ => "video/mp4",
    };
    Ok(format!("data:{mime};base64,{}", b64(&read(p)?)))
}

/// The user message content of a sample: one media part per path, then the text.
pub fn content(sample: &Sample, mode: MediaMode, num_frames: usize) -> Result<Vec<Part>> {
    let mut parts = Vec::with_capacity(sample.paths.len() + 1);
    for p in &sample.paths {
        let url = match mode {
            MediaMode::Path => format!("file://{}", p.display()),
            MediaMode::Base64 => match sample.kind {
                MediaKind::Image => {
                    let bytes = read(p)?;
                    format!("data:{};base64,{}", image_mime(&bytes), b64(&bytes))
                }
                MediaKind::Video => video_base64(p, num_frames)?,
                MediaKind::Audio => {
                    let mime = match ext(p).as_str() {
                        "wav" => "audio/x-wav",
                        "flac" => "audio/flac",
                        _ => "audio/mpeg",
                    };
                    format!("data:{mime};base64,{}", b64(&read(p)?))
                }
            },
        };
        parts.push(match sample.kind {
            MediaKind::Image => Part::Image(url),
            MediaKind::Video => Part::Video(url),
            MediaKind::Audio => Part::Audio(url),
        });
    }
    parts.push(Part::Text(sample.prompt.clone()));
    Ok(parts)
}
