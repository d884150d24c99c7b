//! The VQA normaliser and TextVQA scorer (spec §3.5, AISBench `TEXTEvaluator`), and a tiny
//! synthetic VQA task whose accuracy is known exactly.

use qwen3vl::bench::vqa::{
    accuracy, extract_non_reasoning_content, normalize_prediction, process_digit_article,
    process_punctuation, score_question, GtAnswer, MAX_TARGET_LENGTH,
};
use serde_json::json;

#[test]
fn normaliser_on_the_official_rules() {
    let cases = [
        // number words → digits, articles dropped, lower-cased
        ("Two dogs.", "2 dogs"),
        ("The cat", "cat"),
        ("a an the", ""),
        ("none", "0"),
        ("Ten", "10"),
        // contractions
        ("isnt", "isn't"),
        ("dont know", "don't know"),
        ("whats that", "what's that"),
        // punctuation replaced by a space unless spaced or a digit,digit is present
        ("hello-world", "hello world"),
        ("hello - world", "hello world"),
        ("3,000", "3000"),
        ("yes, 1,000 items", "yes 1000 items"),
        ("Yes!", "yes"),
        ("(left)", "left"),
        // periods: removed unless followed by a digit
        ("U.S.A.", "usa"),
        ("3.14", "3.14"),
        ("e.g. this", "eg this"),
        // special tokens and whitespace
        ("<|im_end|>yes\n", "yes"),
        ("  stop\tsign  ", "stop sign"),
        ("☞dakota☜", "dakota"),
    ];
    for (input, want) in cases {
        assert_eq!(
            normalize_prediction(input).unwrap(),
            want,
            "input {input:?}"
        );
    }
}

#[test]
fn punctuation_and_article_steps_separately() {
    assert_eq!(process_punctuation("a/b").unwrap(), "a b");
    assert_eq!(process_punctuation("a / b").unwrap(), "a  b");
    assert_eq!(process_punctuation("it's").unwrap(), "it's");
    assert_eq!(process_punctuation("1,2/3").unwrap(), "123");
    assert_eq!(process_digit_article("The Two of US").unwrap(), "2 of us");
    // At most 32 periods are stripped (`re.UNICODE` passed as count).
    let dots = ".".repeat(40);
    assert_eq!(process_punctuation(&dots).unwrap(), ".".repeat(8));
    // Over-long texts are refused like AISBench.
    let long = "x".repeat(MAX_TARGET_LENGTH + 1);
    assert!(process_punctuation(&long).is_err());
    let s = score_question(&long, &GtAnswer::from_strings(&["x"]));
    assert_eq!(s.score, 0.0);
    assert!(s.error.is_some());
}

#[test]
fn reasoning_is_removed_before_scoring() {
    assert_eq!(
        extract_non_reasoning_content("<think>maybe two?\n</think>\n\nTwo"),
        "Two"
    );
    assert_eq!(
        extract_non_reasoning_content("a<think>x</think>b<think>y</think>c"),
        "abc"
    );
    assert_eq!(
        extract_non_reasoning_content("<think>unterminated"),
        "<think>unterminated"
    );
    let gts = GtAnswer::from_strings(&["2"; 10]);
    assert_eq!(score_question("<think>hmm</think>two", &gts).score, 1.0);
}

fn records(answers: &[&str], with_id: bool) -> Vec<GtAnswer> {
    answers
        .iter()
        .enumerate()
        .map(|(i, a)| GtAnswer {
            answer: a.to_string(),
            identity: if with_id {
                json!({"answer_id": i + 1, "answer_confidence": "yes"})
            } else {
                json!({})
            },
        })
        .collect()
}

#[test]
fn leave_one_out_scores() {
    // 10 identical answers: every subset has 9 matches → 1.
    let all = GtAnswer::from_strings(&["dakota"; 10]);
    let s = score_question("Dakota.", &all);
    assert_eq!(s.normalized, "dakota");
    assert_eq!(s.score, 1.0);
    assert!(s.correct);

    // Two of ten say "2": the two subsets without one of them have 1 match (1/3), the other
    // eight have 2 matches (2/3): (2·1/3 + 8·2/3) / 10 = 0.6.
    let mut list = vec!["2", "2"];
    list.extend(["4"; 8]);
    let s = score_question("two", &GtAnswer::from_strings(&list));
    assert!((s.score - 0.6).abs() < 1e-12, "{}", s.score);
    assert!(s.correct);
    // Same with TextVQA records carrying answer_id (positional leave-one-out).
    let s = score_question("two", &records(&list, true));
    assert!((s.score - 0.6).abs() < 1e-12);
    // Records with only `answer`: AISBench's `item != gt_ans` drops every identical copy,
    // so the "2" subsets have 0 matches: 8·(2/3)/10.
    let s = score_question("two", &records(&list, false));
    assert!((s.score - 16.0 / 30.0).abs() < 1e-12, "{}", s.score);

    // Four or more matches in every subset → 1.
    let mut list = vec!["yes"; 4];
    list.extend(["no"; 6]);
    assert_eq!(
        score_question("yes", &GtAnswer::from_strings(&list)).score,
        1.0
    );

    // GT answers get punctuation processing only when they differ.
    let gts = GtAnswer::from_strings(&["coca-cola", "coca-cola", "coca-cola", "coke"]);
    // "coca-cola" → "coca cola" on both sides: subsets keep 2 or 3 matches.
    let s = score_question("Coca-Cola", &gts);
    assert!((s.score - (3.0 * (2.0 / 3.0) + 1.0) / 4.0).abs() < 1e-12);

    // No match, empty GT.
    assert_eq!(score_question("blue", &all).score, 0.0);
    let empty = score_question("blue", &[]);
    assert_eq!(empty.score, 0.0);
    assert!(empty.error.is_some());
}

#[test]
fn synthetic_task_with_known_accuracy() {
    // Fixed predictions for a 5-question task; expected per-question scores by hand.
    let mut two = vec!["2", "2"];
    two.extend(["4"; 8]);
    let task: Vec<(&str, Vec<GtAnswer>, f64)> = vec![
        ("Dakota", GtAnswer::from_strings(&["dakota"; 10]), 1.0),
        ("two", GtAnswer::from_strings(&two), 0.6),
        ("STOP.", GtAnswer::from_strings(&["stop"; 10]), 1.0),
        ("red", GtAnswer::from_strings(&["blue"; 10]), 0.0),
        (
            "The Yellow.",
            GtAnswer::from_strings(&[
                "yellow", "gold", "gold", "gold", "gold", "gold", "gold", "gold", "gold", "gold",
            ]),
            // one GT matches; the subset leaving it out has 0 matches, the other nine 1/3.
            0.3,
        ),
    ];
    let scores: Vec<_> = task
        .iter()
        .map(|(p, gts, want)| {
            let s = score_question(p, gts);
            assert!((s.score - want).abs() < 1e-12, "{p}: {} != {want}", s.score);
            s
        })
        .collect();
    let acc = accuracy(&scores);
    assert!((acc - 100.0 * (1.0 + 0.6 + 1.0 + 0.0 + 0.3) / 5.0).abs() < 1e-9);
    assert!((acc - 58.0).abs() < 1e-9);
    assert_eq!(scores.iter().filter(|s| s.correct).count(), 3);

    // Number words are mapped in the prediction but never in the ground truth (official
    // VQA behaviour): "one" → "1" no longer matches "yellow one".
    let s = score_question(
        "the yellow one",
        &GtAnswer::from_strings(&["yellow one"; 10]),
    );
    assert_eq!(s.normalized, "yellow 1");
    assert_eq!(s.score, 0.0);
}
