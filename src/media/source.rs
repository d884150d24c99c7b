//! Where media bytes come from: local files under a media root, `data:` URLs, bare base64 and
//! `http(s)://` URLs, each with a size cap.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;

use super::error::{MediaError, Result};
use super::MediaLimits;

/// A parsed media reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// A local path (from a plain path or a `file://` URL); relative paths resolve against the
    /// fetcher's base directory.
    File(PathBuf),
    /// `data:<mime>;base64,<payload>`: the MIME type and the still-encoded payload.
    DataUrl { mime: String, base64: String },
    /// Bare base64 (no `data:` prefix).
    Base64(String),
    /// An `http://` or `https://` URL.
    Http(String),
}

fn looks_like_base64(s: &str) -> bool {
    // Paths are short and contain `/` or `.` in ways base64 blobs of real images never are alone;
    // require a length no file name reaches and an alphabet no path-with-extension satisfies.
    s.len() >= 128
        && !s.contains('.')
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_' | b'\n' | b'\r')
        })
}

impl MediaSource {
    /// Classifies a user-supplied reference string.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        if t.is_empty() {
            return Err(MediaError::UnsupportedSource(String::new()));
        }
        let lower = t.get(..8).unwrap_or(t).to_ascii_lowercase();
        if lower.starts_with("data:") {
            let rest = &t[5..];
            let (meta, payload) = rest
                .split_once(',')
                .ok_or_else(|| MediaError::BadDataUrl("missing ','".into()))?;
            let mut parts = meta.split(';');
            let mime = parts.next().unwrap_or_default().to_string();
            if !parts.any(|p| p.eq_ignore_ascii_case("base64")) {
                return Err(MediaError::BadDataUrl(
                    "only base64-encoded data URLs are supported".into(),
                ));
            }
            return Ok(Self::DataUrl {
                mime,
                base64: payload.to_string(),
            });
        }
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Self::Http(t.to_string()));
        }
        if lower.starts_with("file://") {
            let rest = &t[7..];
            // `file://localhost/abs` and `file:///abs` are both absolute; `file://rel` is relative.
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            return Ok(Self::File(PathBuf::from(percent_decode(rest)?)));
        }
        if let Some((scheme, _)) = t.split_once("://") {
            if scheme.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(MediaError::UnsupportedSource(truncate(t)));
            }
        }
        if looks_like_base64(t) {
            return Ok(Self::Base64(t.to_string()));
        }
        Ok(Self::File(PathBuf::from(t)))
    }

    /// A short description for error messages (never the whole payload).
    pub fn describe(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::DataUrl { mime, base64 } => {
                format!("data:{mime} ({} base64 chars)", base64.len())
            }
            Self::Base64(b) => format!("base64 ({} chars)", b.len()),
            Self::Http(u) => u.clone(),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| MediaError::UnsupportedSource(truncate(s)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| MediaError::UnsupportedSource(truncate(s)))
}

/// Decodes standard or URL-safe base64, padded or not, ignoring line breaks.
pub fn decode_base64(payload: &str, limit: u64) -> Result<Vec<u8>> {
    let cleaned: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let approx = cleaned.len() as u64 / 4 * 3;
    if approx > limit {
        return Err(MediaError::TooLarge {
            size: approx,
            limit,
        });
    }
    let trimmed = cleaned.trim_end_matches('=');
    let engine = if trimmed.contains(['-', '_']) {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let bytes = engine
        .decode(trimmed)
        .map_err(|e| MediaError::BadBase64(e.to_string()))?;
    if bytes.is_empty() {
        return Err(MediaError::BadBase64("empty payload".into()));
    }
    Ok(bytes)
}

/// Resolves and reads media references under a [`MediaLimits`] policy.
#[derive(Debug, Clone)]
pub struct MediaFetcher {
    limits: MediaLimits,
    /// Directory that relative paths resolve against.
    base_dir: Option<PathBuf>,
    /// http(s) items already downloaded (by the server's media stage, outside its
    /// preprocessing slots), by URL as written in the request.
    prefetched: Option<Arc<HashMap<String, Arc<[u8]>>>>,
}

impl MediaFetcher {
    pub fn new(limits: MediaLimits) -> Self {
        Self {
            limits,
            base_dir: None,
            prefetched: None,
        }
    }

    /// Serve these http(s) URLs from memory instead of fetching them.
    pub fn with_prefetched(mut self, items: Arc<HashMap<String, Arc<[u8]>>>) -> Self {
        self.prefetched = Some(items);
        self
    }

    /// Relative paths resolve against `dir` (they must still lie under the media root).
    pub fn with_base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    pub fn limits(&self) -> &MediaLimits {
        &self.limits
    }

    /// Checks a local path against the media root and returns its canonical form.
    ///
    /// Canonicalisation resolves `..` and symlinks first, so neither can escape the root.
    pub fn resolve_path(&self, path: &Path) -> Result<PathBuf> {
        let root = self
            .limits
            .media_root
            .as_ref()
            .ok_or(MediaError::LocalAccessDisabled)?;
        let joined = match (&self.base_dir, path.is_absolute()) {
            (Some(base), false) => base.join(path),
            _ => path.to_path_buf(),
        };
        let io_err = |p: &Path, source| MediaError::Io {
            path: p.to_path_buf(),
            source,
        };
        let root_c = root.canonicalize().map_err(|e| io_err(root, e))?;
        let canon = match joined.canonicalize() {
            Ok(c) => c,
            // Do not reveal whether a path outside the root exists.
            Err(_) if !lexically_under(&joined, &root_c) => {
                return Err(MediaError::OutsideMediaRoot {
                    path: joined,
                    root: root_c,
                })
            }
            Err(e) => return Err(io_err(&joined, e)),
        };
        if !canon.starts_with(&root_c) {
            return Err(MediaError::OutsideMediaRoot {
                path: joined,
                root: root_c,
            });
        }
        Ok(canon)
    }

    /// Reads the bytes behind `source`, enforcing the per-item byte cap.
    pub fn fetch(&self, source: &MediaSource) -> Result<Vec<u8>> {
        let limit = self.limits.max_item_bytes;
        match source {
            MediaSource::File(p) => {
                let path = self.resolve_path(p)?;
                let io_err = |source| MediaError::Io {
                    path: path.clone(),
                    source,
                };
                let file = std::fs::File::open(&path).map_err(io_err)?;
                let meta = file.metadata().map_err(io_err)?;
                if !meta.is_file() {
                    return Err(MediaError::Io {
                        path: path.clone(),
                        source: std::io::Error::other("not a regular file"),
                    });
                }
                if meta.len() > limit {
                    return Err(MediaError::TooLarge {
                        size: meta.len(),
                        limit,
                    });
                }
                read_capped(file, limit).map_err(|e| match e {
                    CapError::Io(source) => MediaError::Io {
                        path: path.clone(),
                        source,
                    },
                    CapError::TooLarge(size) => MediaError::TooLarge { size, limit },
                })
            }
            MediaSource::DataUrl { base64, .. } | MediaSource::Base64(base64) => {
                decode_base64(base64, limit)
            }
            MediaSource::Http(url) => self.fetch_http(url),
        }
    }

    fn fetch_http(&self, url: &str) -> Result<Vec<u8>> {
        if let Some(bytes) = self.prefetched.as_ref().and_then(|m| m.get(url)) {
            return Ok(bytes.to_vec());
        }
        super::net::fetch_blocking(url, &self.limits)
    }
}

fn lexically_under(path: &Path, root: &Path) -> bool {
    use std::path::Component;
    let mut depth = 0i64;
    let mut stack: Vec<&std::ffi::OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                stack.pop();
                depth -= 1;
            }
            Component::Normal(n) => {
                stack.push(n);
                depth += 1;
            }
            _ => {}
        }
    }
    let normalized: PathBuf = std::iter::once(std::ffi::OsStr::new("/"))
        .chain(stack)
        .collect();
    depth >= 0 && normalized.starts_with(root)
}

enum CapError {
    Io(std::io::Error),
    TooLarge(u64),
}

fn read_capped(reader: impl Read, limit: u64) -> std::result::Result<Vec<u8>, CapError> {
    let mut buf = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(CapError::Io)?;
    if buf.len() as u64 > limit {
        return Err(CapError::TooLarge(buf.len() as u64));
    }
    Ok(buf)
}
