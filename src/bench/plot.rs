//! A hand-written SVG of the latency distributions of a run: one histogram panel per series
//! (TTFT and E2EL, in ms), with the median and P99 marked.

use std::fmt::Write as _;

use super::metrics::percentile;

/// A tick or marker label: 1 decimal (ms values), trailing ".0" dropped.
fn short(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// One plotted distribution.
pub struct Series<'a> {
    pub title: &'a str,
    /// Values in ms.
    pub values: &'a [f64],
}

const W: f64 = 720.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 45.0;
const BINS: usize = 30;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Histogram counts of `values` over `[lo, hi]` in `bins` equal bins.
pub fn histogram(values: &[f64], lo: f64, hi: f64, bins: usize) -> Vec<usize> {
    let mut counts = vec![0usize; bins.max(1)];
    let span = hi - lo;
    for &v in values {
        if !v.is_finite() {
            continue;
        }
        let i = if span > 0.0 {
            (((v - lo) / span) * bins as f64).floor() as isize
        } else {
            0
        };
        let i = i.clamp(0, bins as isize - 1) as usize;
        counts[i] += 1;
    }
    counts
}

fn panel(svg: &mut String, y0: f64, s: &Series) {
    let plot_w = W - LEFT - RIGHT;
    let plot_h = PANEL_H - TOP - BOTTOM;
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="15" font-weight="bold">{} (ms), n = {}</text>"#,
        LEFT,
        y0 + 22.0,
        esc(s.title),
        s.values.len()
    );
    let base_y = y0 + TOP + plot_h;
    if s.values.is_empty() {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="13">no data</text>"#,
            LEFT,
            y0 + TOP + plot_h / 2.0
        );
        return;
    }
    let lo = s.values.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = s.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi <= lo {
        hi = lo + 1.0;
    }
    let counts = histogram(s.values, lo, hi, BINS);
    let max_c = counts.iter().copied().max().unwrap_or(1).max(1);
    let bw = plot_w / BINS as f64;
    for (i, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let h = plot_h * c as f64 / max_c as f64;
        let _ = writeln!(
            svg,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4c78a8"><title>{}</title></rect>"##,
            LEFT + i as f64 * bw + 0.5,
            base_y - h,
            (bw - 1.0).max(0.5),
            h,
            c
        );
    }
    // Axes and ticks.
    let _ = writeln!(
        svg,
        r#"<line x1="{LEFT}" y1="{base_y:.1}" x2="{:.1}" y2="{base_y:.1}" stroke="black"/>"#,
        LEFT + plot_w
    );
    let _ = writeln!(
        svg,
        r#"<line x1="{LEFT}" y1="{:.1}" x2="{LEFT}" y2="{base_y:.1}" stroke="black"/>"#,
        y0 + TOP
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let x = LEFT + plot_w * k as f64 / 4.0;
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            base_y + 16.0,
            short(v)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{max_c}</text>"#,
        LEFT - 6.0,
        y0 + TOP + 10.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">requests per bin — latency (ms)</text>"#,
        LEFT + plot_w / 2.0,
        base_y + 34.0
    );
    for (label, p, color) in [("median", 50.0, "#e45756"), ("P99", 99.0, "#54a24b")] {
        let v = percentile(s.values, p);
        let x = LEFT + plot_w * (v - lo) / (hi - lo);
        let _ = writeln!(
            svg,
            r#"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{base_y:.1}" stroke="{color}" stroke-dasharray="4 3"/>"#,
            y0 + TOP
        );
        // Labels on the right half sit left of their line.
        let (lx, anchor) = if x > LEFT + plot_w * 0.6 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = writeln!(
            svg,
            r#"<text x="{lx:.1}" y="{:.1}" font-size="11" fill="{color}" text-anchor="{anchor}">{label} {}</text>"#,
            y0 + TOP + if label == "P99" { 24.0 } else { 12.0 },
            short(v)
        );
    }
}

/// An SVG document with one histogram panel per series.
pub fn latency_svg(title: &str, series: &[Series]) -> String {
    let h = 30.0 + PANEL_H * series.len().max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(svg, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="20" font-size="16">{}</text>"#,
        esc(title)
    );
    for (i, s) in series.iter().enumerate() {
        panel(&mut svg, 30.0 + PANEL_H * i as f64, s);
    }
    svg.push_str("</svg>\n");
    svg
}
