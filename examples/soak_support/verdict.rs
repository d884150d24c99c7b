//! What a soak must show: no 5xx and no broken stream, every request accounted for by the
//! server's counters, every KV block back, health answers fast, and no RSS growth once warm.

use super::load::SoakReport;

pub struct Limits {
    /// Largest RSS growth after the warm-up, KiB per minute.
    pub rss_slope_kib_per_min: f64,
    /// 99th percentile of `/health` and readiness latency, milliseconds.
    pub health_p99_ms: f64,
}

impl SoakReport {
    /// Least-squares slope of RSS after the warm-up (allocator arenas, the prefix cache and
    /// the vision buffers grow first), KiB per minute.
    pub fn rss_slope_kib_per_min(&self) -> Option<f64> {
        let pts: Vec<(f64, f64)> = self
            .rss
            .iter()
            .map(|&(t, k)| (t / 60.0, k as f64))
            .collect();
        if pts.len() < 4 {
            return None;
        }
        let n = pts.len() as f64;
        let (mx, my) = (
            pts.iter().map(|p| p.0).sum::<f64>() / n,
            pts.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        (sxx > 0.0).then(|| sxy / sxx)
    }

    pub fn health_percentile(&self, p: f64) -> f64 {
        let mut v = self.health_ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        v[((v.len() - 1) as f64 * p).round() as usize]
    }

    /// Every broken promise, in words; empty when the soak passed.
    pub fn failures(&self, limits: &Limits) -> Vec<String> {
        let mut f = Vec::new();
        let (b, a) = (&self.before, &self.after);
        let d = |x: u64, y: u64| y.saturating_sub(x);
        let (received, success) = (d(b.received, a.received), d(b.success, a.success));
        let (failed, cancelled) = (d(b.failed, a.failed), d(b.cancelled, a.cancelled));
        let rejected = d(b.rejected, a.rejected);
        if self.sent == 0 {
            f.push("no request was sent".into());
        }
        let bad: Vec<_> = self.statuses.iter().filter(|(s, _)| **s != 200).collect();
        if !bad.is_empty() {
            f.push(format!("non-200 answers: {bad:?}"));
        }
        if !self.transport_errors.is_empty() {
            f.push(format!(
                "transport errors: {:?}",
                &self.transport_errors[..3.min(self.transport_errors.len())]
            ));
        }
        if !self.broken_streams.is_empty() {
            f.push(format!(
                "broken responses: {:?}",
                &self.broken_streams[..3.min(self.broken_streams.len())]
            ));
        }
        if received != self.sent {
            f.push(format!(
                "server received {received}, clients sent {}",
                self.sent
            ));
        }
        if success + failed + cancelled + rejected != received {
            f.push(format!(
                "counters do not add up: {success} ok + {failed} failed + {cancelled} cancelled + {rejected} rejected != {received} received"
            ));
        }
        if failed != 0 || rejected != 0 {
            f.push(format!("{failed} failed and {rejected} rejected requests"));
        }
        if success < self.completed || cancelled > self.hang_ups {
            f.push(format!(
                "server: {success} ok, {cancelled} cancelled; clients: {} completed, {} hung up",
                self.completed, self.hang_ups
            ));
        }
        if a.running != 0 || a.in_flight != 0 {
            f.push(format!(
                "still busy after the run: {} running, {} in flight",
                a.running, a.in_flight
            ));
        }
        if a.free_blocks != b.free_blocks {
            f.push(format!(
                "free KV blocks {} before, {} after",
                b.free_blocks, a.free_blocks
            ));
        }
        if self.health_failures > 0 {
            f.push(format!("{} health checks failed", self.health_failures));
        }
        let p99 = self.health_percentile(0.99);
        if p99.is_nan() || p99 > limits.health_p99_ms {
            f.push(format!(
                "health p99 {p99:.1} ms > {} ms",
                limits.health_p99_ms
            ));
        }
        match self.rss_slope_kib_per_min() {
            Some(s) if s > limits.rss_slope_kib_per_min => f.push(format!(
                "RSS grows {s:.0} KiB/min after the warm-up (limit {})",
                limits.rss_slope_kib_per_min
            )),
            None => f.push("too few RSS samples".into()),
            _ => {}
        }
        f
    }

    pub fn summary(&self) -> String {
        let (b, a) = (&self.before, &self.after);
        let rss = |i: Option<&(f64, u64)>| i.map_or(0, |s| s.1 / 1024);
        format!(
            "sent {} (completed {}, hung up {}) by kind {:?}; statuses {:?}\n\
             server: +{} received, +{} ok, +{} failed, +{} cancelled, +{} rejected; free blocks {} -> {}\n\
             health: {} checks, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n\
             RSS: {} MiB after the warm-up, {} MiB at the end, slope {:.0} KiB/min",
            self.sent, self.completed, self.hang_ups, self.by_kind, self.statuses,
            a.received - b.received.min(a.received), a.success.saturating_sub(b.success),
            a.failed.saturating_sub(b.failed), a.cancelled.saturating_sub(b.cancelled),
            a.rejected.saturating_sub(b.rejected), b.free_blocks, a.free_blocks,
            self.health_ms.len(), self.health_percentile(0.5), self.health_percentile(0.99),
            self.health_percentile(1.0),
            rss(self.rss.first()), rss(self.rss.last()),
            self.rss_slope_kib_per_min().unwrap_or(f64::NAN),
        )
    }
}
