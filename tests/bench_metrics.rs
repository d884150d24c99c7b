//! AISBench metric definitions against hand-computed values (spec §3.3).

use qwen3vl::bench::metrics::{
    default_stats, evaluate, percentile, request_metrics, statistics, summarize, token_counts,
    Stat, TokenCounts,
};
use qwen3vl::bench::record::{RequestRecord, Usage};
use qwen3vl::bench::BenchError;

fn rec(index: usize, tp: &[f64], prompt: Option<u64>, completion: Option<u64>) -> RequestRecord {
    RequestRecord {
        index,
        sample_id: format!("s{index}"),
        success: true,
        error: None,
        time_points: tp.to_vec(),
        content: "some text".into(),
        reasoning: String::new(),
        usage: Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        },
        multimodal: true,
    }
}

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-9, "{a} != {b}");
}

#[test]
fn numpy_linear_percentiles() {
    close(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
    close(percentile(&[5.0, 4.0, 3.0, 2.0, 1.0], 90.0), 4.6);
    close(percentile(&[15.0, 20.0, 35.0, 40.0, 50.0], 40.0), 29.0);
    close(percentile(&[7.0], 99.0), 7.0);
    close(percentile(&[], 50.0), 0.0);
    let s = statistics(&[0.1, 0.2], &default_stats());
    // Average, Min, Max, Median, P75, P90, P99
    let want = [0.15, 0.1, 0.2, 0.15, 0.175, 0.19, 0.199];
    for (g, w) in s.iter().zip(want) {
        close(*g, w);
    }
    assert_eq!(Stat::parse("P99"), Some(Stat::Percentile(99)));
    assert_eq!(Stat::parse("P0"), None);
    assert_eq!(Stat::parse("P100"), None);
    assert_eq!(Stat::parse("Mean"), None);
}

#[test]
fn per_request_stream_metrics() {
    let r = rec(0, &[0.0, 0.1, 0.15, 0.2, 0.3], Some(100), Some(4));
    let t = token_counts(&r, None, None);
    assert_eq!(
        t,
        TokenCounts {
            input: 100,
            output: 4
        }
    );
    let m = request_metrics(&r, t, true).unwrap();
    close(m.e2el, 0.3);
    close(m.ttft, 0.1);
    close(m.tpot, (0.3 - 0.1) / 3.0);
    assert_eq!(m.itl.len(), 3);
    close(m.itl[0], 0.05);
    close(m.itl[1], 0.05);
    close(m.itl[2], 0.1);
    close(m.output_token_throughput, 4.0 / 0.3);
    close(m.prefill_token_throughput, 100.0 / 0.1);
    close(m.start_time, 0.0);
    close(m.end_time, 0.3);
}

#[test]
fn tpot_is_zero_for_one_output_token_and_itl_needs_three_points() {
    let r = rec(0, &[1.0, 1.5], Some(10), Some(1));
    let m = request_metrics(&r, token_counts(&r, None, None), true).unwrap();
    close(m.ttft, 0.5);
    close(m.tpot, 0.0);
    assert!(m.itl.is_empty());
}

#[test]
fn non_stream_has_no_ttft_or_tpot() {
    let r = rec(0, &[2.0, 2.8], Some(10), Some(8));
    let m = request_metrics(&r, token_counts(&r, None, None), false).unwrap();
    close(m.e2el, 0.8);
    close(m.ttft, 0.0);
    close(m.tpot, 0.0);
    close(m.output_token_throughput, 10.0);
    close(m.prefill_token_throughput, 0.0);
}

#[test]
fn fewer_than_two_points_fails() {
    let r = rec(0, &[2.0], Some(10), Some(8));
    assert_eq!(
        request_metrics(&r, TokenCounts::default(), true).unwrap_err(),
        "chunk size is less than 2"
    );
    let mut f = rec(1, &[0.0, 1.0], None, None);
    f.success = false;
    f.error = Some("HTTP 422 Unprocessable Entity".into());
    assert_eq!(
        request_metrics(&f, TokenCounts::default(), true).unwrap_err(),
        "HTTP 422 Unprocessable Entity"
    );
}

#[test]
fn token_precedence() {
    // Server usage wins.
    let r = rec(0, &[0.0, 1.0], Some(7), Some(3));
    assert_eq!(
        token_counts(&r, Some(99), Some(99)),
        TokenCounts {
            input: 7,
            output: 3
        }
    );
    // prompt_tokens 0 on a multimodal prompt → 0, not the fallback.
    let r = rec(0, &[0.0, 1.0], Some(0), None);
    assert_eq!(
        token_counts(&r, Some(99), Some(5)),
        TokenCounts {
            input: 0,
            output: 5
        }
    );
    // Text prompt without usage → tokenizer counts.
    let mut r = rec(0, &[0.0, 1.0], None, None);
    r.multimodal = false;
    assert_eq!(
        token_counts(&r, Some(12), Some(5)),
        TokenCounts {
            input: 12,
            output: 5
        }
    );
    // No usage, no tokenizer → 0 (AISBench's Output default).
    assert_eq!(
        token_counts(&r, None, None),
        TokenCounts {
            input: 0,
            output: 0
        }
    );
}

#[test]
fn summary_matches_hand_computation() {
    let a = rec(0, &[0.0, 0.1, 0.15, 0.2, 0.3], Some(100), Some(4));
    let b = rec(1, &[0.05, 0.25, 0.45], Some(50), Some(2));
    let mut c = rec(2, &[0.0, 0.9], None, None);
    c.success = false;
    c.error = Some("connection failed".into());
    let records = vec![a, b, c];
    let tokens: Vec<_> = records
        .iter()
        .map(|r| token_counts(r, None, None))
        .collect();
    let per = evaluate(&records, &tokens, true);
    let s = summarize(&per, &default_stats(), 4).unwrap();

    assert_eq!(
        s.stats,
        vec!["Average", "Min", "Max", "Median", "P75", "P90", "P99"]
    );
    let names: Vec<&str> = s.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "E2EL",
            "TTFT",
            "TPOT",
            "ITL",
            "InputTokens",
            "OutputTokens",
            "OutputTokenThroughput",
            "PrefillTokenThroughput"
        ]
    );
    let get = |n: &str| s.metric(n).unwrap();
    let check = |n: &str, want: [f64; 7]| {
        for (g, w) in get(n).values.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{n}: {g} != {w}");
        }
    };
    check("E2EL", [350.0, 300.0, 400.0, 350.0, 375.0, 390.0, 399.0]);
    check("TTFT", [150.0, 100.0, 200.0, 150.0, 175.0, 190.0, 199.0]);
    let tpot_a = 200.0 / 3.0;
    check(
        "TPOT",
        [
            (tpot_a + 200.0) / 2.0,
            tpot_a,
            200.0,
            (tpot_a + 200.0) / 2.0,
            tpot_a + 0.75 * (200.0 - tpot_a),
            tpot_a + 0.9 * (200.0 - tpot_a),
            tpot_a + 0.99 * (200.0 - tpot_a),
        ],
    );
    // ITL pooled over requests: [50, 50, 100, 200] ms.
    check("ITL", [100.0, 50.0, 200.0, 75.0, 125.0, 170.0, 197.0]);
    check("InputTokens", [75.0, 50.0, 100.0, 75.0, 87.5, 95.0, 99.5]);
    check("OutputTokens", [3.0, 2.0, 4.0, 3.0, 3.5, 3.8, 3.98]);
    let (oa, ob) = (4.0 / 0.3, 5.0);
    check(
        "OutputTokenThroughput",
        [
            (oa + ob) / 2.0,
            ob,
            oa,
            (oa + ob) / 2.0,
            ob + 0.75 * (oa - ob),
            ob + 0.9 * (oa - ob),
            ob + 0.99 * (oa - ob),
        ],
    );
    check(
        "PrefillTokenThroughput",
        [625.0, 250.0, 1000.0, 625.0, 812.5, 925.0, 992.5],
    );
    assert_eq!(get("E2EL").n, 2);
    assert_eq!(get("TPOT").n, 2);
    assert_eq!(get("ITL").n, 2);
    assert_eq!(get("E2EL").unit, "ms");
    assert_eq!(get("InputTokens").unit, "");
    assert_eq!(get("OutputTokenThroughput").unit, "token/s");

    let c = &s.common;
    assert!((c.benchmark_duration_ms - 450.0).abs() < 1e-9);
    assert_eq!(c.total_requests, 3);
    assert_eq!(c.failed_requests, 1);
    assert_eq!(c.success_requests, 2);
    assert!((c.concurrency - 0.7 / 0.45).abs() < 1e-9);
    assert_eq!(c.max_concurrency, 4);
    assert!((c.request_throughput - 2.0 / 0.45).abs() < 1e-9);
    assert_eq!(c.total_input_tokens, 150);
    assert_eq!(c.total_generated_tokens, 6);
    assert!((c.input_token_throughput - 150.0 / 0.45).abs() < 1e-9);
    assert!((c.output_token_throughput - 6.0 / 0.45).abs() < 1e-9);
    assert!((c.total_token_throughput - 156.0 / 0.45).abs() < 1e-9);
    assert_eq!(s.failures.len(), 1);
    assert_eq!(s.failures[0].index, 2);
    assert_eq!(s.failures[0].reason, "connection failed");
}

#[test]
fn non_stream_summary_drops_ttft_tpot_itl_and_prefill() {
    let records = vec![
        rec(0, &[0.0, 0.5], Some(10), Some(5)),
        rec(1, &[0.1, 0.4], Some(10), Some(3)),
    ];
    let tokens: Vec<_> = records
        .iter()
        .map(|r| token_counts(r, None, None))
        .collect();
    let s = summarize(&evaluate(&records, &tokens, false), &default_stats(), 2).unwrap();
    let names: Vec<&str> = s.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "E2EL",
            "InputTokens",
            "OutputTokens",
            "OutputTokenThroughput"
        ]
    );
    assert!((s.common.concurrency - 0.8 / 0.5).abs() < 1e-9);
}

#[test]
fn custom_stats_and_all_failed() {
    let records = vec![rec(0, &[0.0, 0.1, 0.3], Some(1), Some(2))];
    let tokens: Vec<_> = records
        .iter()
        .map(|r| token_counts(r, None, None))
        .collect();
    let stats = vec![Stat::Percentile(50), Stat::Max];
    let s = summarize(&evaluate(&records, &tokens, true), &stats, 1).unwrap();
    assert_eq!(s.stats, vec!["P50", "Max"]);
    assert_eq!(s.metric("E2EL").unwrap().values.len(), 2);

    let mut bad = rec(0, &[0.0], None, None);
    bad.success = false;
    let per = evaluate(&[bad], &[TokenCounts::default()], true);
    assert!(matches!(
        summarize(&per, &default_stats(), 1),
        Err(BenchError::AllFailed(1))
    ));
}
