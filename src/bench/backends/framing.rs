//! Splitting a streamed body into events.
//!
//! * [`SseFramer`]: AISBench `BaseAPIModel.iter_lines` + `stream_infer` — events end at a
//!   blank line (`\n\n`, `\r\n\r\n` or `\r\r`); each event is trimmed, empty events and
//!   `:` comments are skipped, a leading `data:` is removed (with or without a space), and
//!   `[DONE]` ends the stream. A trailing event without its blank line is still delivered
//!   at the end of the body.
//! * [`NulFramer`]: MindIE / vLLM `/generate` streams: JSON objects each ended by `\0`.

/// What a framer yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One event's payload (for SSE, without the `data:` prefix).
    Event(String),
    /// `data: [DONE]`.
    Done,
}

fn find_delim(buf: &[u8]) -> Option<(usize, usize)> {
    // Earliest of "\r\n\r\n", "\n\n", "\r\r".
    let mut best: Option<(usize, usize)> = None;
    for delim in [&b"\r\n\r\n"[..], b"\n\n", b"\r\r"] {
        if let Some(pos) = buf.windows(delim.len()).position(|w| w == delim) {
            if best.is_none_or(|(p, _)| pos < p) {
                best = Some((pos, delim.len()));
            }
        }
    }
    best
}

/// Incremental SSE event splitter.
#[derive(Debug, Default)]
pub struct SseFramer {
    buf: Vec<u8>,
    done: bool,
}

impl SseFramer {
    pub fn new() -> Self {
        Self::default()
    }

    fn event(raw: &[u8]) -> Result<Option<Frame>, String> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| "stream event is not valid UTF-8".to_string())?
            .trim();
        if text.is_empty() || text.starts_with(':') {
            return Ok(None);
        }
        let payload = text.strip_prefix("data:").unwrap_or(text).trim();
        if payload == "[DONE]" {
            return Ok(Some(Frame::Done));
        }
        Ok(Some(Frame::Event(payload.to_string())))
    }

    /// Feeds bytes; returns the complete frames they finish (nothing after `[DONE]`).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        let mut out = Vec::new();
        if self.done {
            return Ok(out);
        }
        self.buf.extend_from_slice(bytes);
        while let Some((pos, len)) = find_delim(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..pos + len).collect();
            if let Some(f) = Self::event(&raw[..pos])? {
                let done = f == Frame::Done;
                out.push(f);
                if done {
                    self.done = true;
                    self.buf.clear();
                    break;
                }
            }
        }
        Ok(out)
    }

    /// End of body: the last event if it had no terminating blank line.
    pub fn finish(&mut self) -> Result<Option<Frame>, String> {
        if self.done || self.buf.is_empty() {
            return Ok(None);
        }
        let raw = std::mem::take(&mut self.buf);
        Self::event(&raw)
    }
}

/// Incremental `\0`-delimited JSON splitter.
#[derive(Debug, Default)]
pub struct NulFramer {
    buf: Vec<u8>,
}

impl NulFramer {
    pub fn new() -> Self {
        Self::default()
    }

    fn event(raw: &[u8]) -> Result<Option<Frame>, String> {
        let text = std::str::from_utf8(raw)
            .map_err(|_| "stream object is not valid UTF-8".to_string())?
            .trim();
        Ok((!text.is_empty()).then(|| Frame::Event(text.to_string())))
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        let mut out = Vec::new();
        self.buf.extend_from_slice(bytes);
        while let Some(pos) = self.buf.iter().position(|&b| b == 0) {
            let raw: Vec<u8> = self.buf.drain(..=pos).collect();
            if let Some(f) = Self::event(&raw[..pos])? {
                out.push(f);
            }
        }
        Ok(out)
    }

    pub fn finish(&mut self) -> Result<Option<Frame>, String> {
        let raw = std::mem::take(&mut self.buf);
        Self::event(&raw)
    }
}

/// Either framer.
#[derive(Debug)]
pub enum Framer {
    Sse(SseFramer),
    Nul(NulFramer),
}

impl Framer {
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, String> {
        match self {
            Framer::Sse(f) => f.push(bytes),
            Framer::Nul(f) => f.push(bytes),
        }
    }

    pub fn finish(&mut self) -> Result<Option<Frame>, String> {
        match self {
            Framer::Sse(f) => f.finish(),
            Framer::Nul(f) => f.finish(),
        }
    }
}
