//! `qwen3vl bench --compare a.json b.json`: two reports side by side with B/A ratios.

use super::report::{common_rows, fmt_num, table, Report};

/// One compared quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    pub metric: String,
    pub stat: String,
    pub unit: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
}

impl CompareRow {
    /// B / A, when both exist and A is non-zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.a, self.b) {
            (Some(a), Some(b)) if a != 0.0 => Some(b / a),
            _ => None,
        }
    }
}

/// Every common metric, every per-request metric × statistic present in either report, and
/// the accuracy when either has one.
pub fn compare_rows(a: &Report, b: &Report) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    let ca = common_rows(&a.summary.common);
    let cb = common_rows(&b.summary.common);
    for ((name, va, unit), (_, vb, _)) in ca.iter().zip(cb.iter()) {
        rows.push(CompareRow {
            metric: name.to_string(),
            stat: String::new(),
            unit: unit.to_string(),
            a: Some(*va),
            b: Some(*vb),
        });
    }
    let mut names: Vec<String> = a.summary.metrics.iter().map(|m| m.name.clone()).collect();
    for m in &b.summary.metrics {
        if !names.contains(&m.name) {
            names.push(m.name.clone());
        }
    }
    let mut stats: Vec<String> = a.summary.stats.clone();
    for s in &b.summary.stats {
        if !stats.contains(s) {
            stats.push(s.clone());
        }
    }
    for name in &names {
        let ma = a.summary.metric(name);
        let mb = b.summary.metric(name);
        let unit = ma.or(mb).map(|m| m.unit.clone()).unwrap_or_default();
        for st in &stats {
            rows.push(CompareRow {
                metric: name.clone(),
                stat: st.clone(),
                unit: unit.clone(),
                a: ma.and_then(|m| m.get(&a.summary.stats, st)),
                b: mb.and_then(|m| m.get(&b.summary.stats, st)),
            });
        }
    }
    if a.accuracy.is_some() || b.accuracy.is_some() {
        rows.push(CompareRow {
            metric: "Accuracy".into(),
            stat: String::new(),
            unit: String::new(),
            a: a.accuracy.as_ref().map(|x| x.accuracy),
            b: b.accuracy.as_ref().map(|x| x.accuracy),
        });
    }
    rows
}

/// The comparison table.
pub fn compare_text(a: &Report, b: &Report) -> String {
    let cell = |v: Option<f64>, unit: &str| match v {
        Some(v) if unit.is_empty() => fmt_num(v),
        Some(v) => format!("{} {unit}", fmt_num(v)),
        None => "-".into(),
    };
    let header = vec![
        "Metric".to_string(),
        "Stat".to_string(),
        format!("A: {}", a.run.name),
        format!("B: {}", b.run.name),
        "B/A".to_string(),
    ];
    let rows: Vec<Vec<String>> = compare_rows(a, b)
        .iter()
        .map(|r| {
            vec![
                r.metric.clone(),
                r.stat.clone(),
                cell(r.a, &r.unit),
                cell(r.b, &r.unit),
                r.ratio()
                    .map(|x| format!("{x:.3}x"))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    format!(
        "A: {} ({}, {})\nB: {} ({}, {})\n{}",
        a.run.name,
        a.run.backend,
        a.run.target,
        b.run.name,
        b.run.backend,
        b.run.target,
        table(&header, &rows)
    )
}
