//! Stop strings on an incrementally detokenized stream. Text that could be the beginning of a
//! stop string is held back until the next delta decides it, so a stop string split across
//! tokens is still found and never leaks into the output.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopResult {
    /// Text that is safe to emit (possibly empty).
    Continue(String),
    /// A stop string matched: emit `text` and finish.
    Stopped { text: String, stop: String },
}

#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    include_stop: bool,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>, include_stop: bool) -> Self {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            include_stop,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    pub fn push(&mut self, delta: &str) -> StopResult {
        if self.stops.is_empty() {
            return StopResult::Continue(delta.to_string());
        }
        self.held.push_str(delta);
        // Earliest match; the longest stop string wins at the same position.
        let mut best: Option<(usize, &String)> = None;
        for s in &self.stops {
            if let Some(i) = self.held.find(s.as_str()) {
                let better = match best {
                    None => true,
                    Some((bi, bs)) => i < bi || (i == bi && s.len() > bs.len()),
                };
                if better {
                    best = Some((i, s));
                }
            }
        }
        if let Some((i, s)) = best {
            let end = if self.include_stop { i + s.len() } else { i };
            let stop = s.clone();
            let text = self.held[..end].to_string();
            self.held.clear();
            return StopResult::Stopped { text, stop };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let mut keep = 0;
        for s in &self.stops {
            let max = (s.len() - 1).min(self.held.len());
            for n in (keep + 1..=max).rev() {
                let from = self.held.len() - n;
                if self.held.is_char_boundary(from) && s.starts_with(&self.held[from..]) {
                    keep = n;
                    break;
                }
            }
        }
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopResult::Continue(out)
    }

    /// The held-back text, at the end of generation.
    pub fn flush(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}
