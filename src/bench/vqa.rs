//! VQA answer normalisation and the TextVQA accuracy scorer, exactly as AISBench's
//! `TEXTEvaluator` / `VQAEvalMethod` (`ais_bench/benchmark/datasets/textvqa.py`), which
//! copies the official VQA evaluation code (spec §3.5).
//!
//! Quirks kept on purpose, because they change scores:
//! * punctuation is deleted (not replaced by a space) when the *original* text contains
//!   `p + ' '` or `' ' + p` for that mark, or a digit-comma-digit anywhere;
//! * the period regex `(?!<=\d)(\.)(?!\d)` only looks *ahead* (the official code meant a
//!   look-behind), so every `.` not followed by a digit is removed; and the Python call
//!   passes `re.UNICODE` (= 32) as the `count` argument, so at most 32 periods go;
//! * ground-truth answers get `process_punctuation` only when the answers are not all
//!   identical, and never lower-casing or article/number handling;
//! * "other GT answers" are those whose whole record differs from the one left out
//!   (Python `item != gt_ans` on dicts): records that carry an `answer_id` give the usual
//!   leave-one-out; records with only `answer` drop every identical copy. Plain-string
//!   answer lists (mm_custom `answer` lists) are compared by position: standard
//!   leave-one-out.

use serde::{Deserialize, Serialize};

/// AISBench raises on texts longer than this (characters).
pub const MAX_TARGET_LENGTH: usize = 32768;

const PUNCT: [char; 21] = [
    ';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
    '?', '!',
];

const SPECIAL_TOKENS: [&str; 6] = ["☞", "☟", "☜", "<unk>", "<|im_end|>", "<|endoftext|>"];

const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Number words `none`..`ten` → digits (`manual_map`).
fn manual_map(word: &str) -> Option<&'static str> {
    Some(match word {
        "none" | "zero" => "0",
        "one" => "1",
        "two" => "2",
        "three" => "3",
        "four" => "4",
        "five" => "5",
        "six" => "6",
        "seven" => "7",
        "eight" => "8",
        "nine" => "9",
        "ten" => "10",
        _ => return None,
    })
}

/// The official VQA contraction table (keys as written there; the capitalised ones can never
/// match after lower-casing, exactly as in the original).
const CONTRACTIONS: &[(&str, &str)] = &[
    ("aint", "ain't"),
    ("arent", "aren't"),
    ("cant", "can't"),
    ("couldve", "could've"),
    ("couldnt", "couldn't"),
    ("couldn'tve", "couldn't've"),
    ("couldnt've", "couldn't've"),
    ("didnt", "didn't"),
    ("doesnt", "doesn't"),
    ("dont", "don't"),
    ("hadnt", "hadn't"),
    ("hadnt've", "hadn't've"),
    ("hadn'tve", "hadn't've"),
    ("hasnt", "hasn't"),
    ("havent", "haven't"),
    ("hed", "he'd"),
    ("hed've", "he'd've"),
    ("he'dve", "he'd've"),
    ("hes", "he's"),
    ("howd", "how'd"),
    ("howll", "how'll"),
    ("hows", "how's"),
    ("Id've", "I'd've"),
    ("I'dve", "I'd've"),
    ("Im", "I'm"),
    ("Ive", "I've"),
    ("isnt", "isn't"),
    ("itd", "it'd"),
    ("itd've", "it'd've"),
    ("it'dve", "it'd've"),
    ("itll", "it'll"),
    ("let's", "let's"),
    ("maam", "ma'am"),
    ("mightnt", "mightn't"),
    ("mightnt've", "mightn't've"),
    ("mightn'tve", "mightn't've"),
    ("mightve", "might've"),
    ("mustnt", "mustn't"),
    ("mustve", "must've"),
    ("neednt", "needn't"),
    ("notve", "not've"),
    ("oclock", "o'clock"),
    ("oughtnt", "oughtn't"),
    ("ow's'at", "'ow's'at"),
    ("'ows'at", "'ow's'at"),
    ("'ow'sat", "'ow's'at"),
    ("shant", "shan't"),
    ("shed've", "she'd've"),
    ("she'dve", "she'd've"),
    ("she's", "she's"),
    ("shouldve", "should've"),
    ("shouldnt", "shouldn't"),
    ("shouldnt've", "shouldn't've"),
    ("shouldn'tve", "shouldn't've"),
    ("somebody'd", "somebodyd"),
    ("somebodyd've", "somebody'd've"),
    ("somebody'dve", "somebody'd've"),
    ("somebodyll", "somebody'll"),
    ("somebodys", "somebody's"),
    ("someoned", "someone'd"),
    ("someoned've", "someone'd've"),
    ("someone'dve", "someone'd've"),
    ("someonell", "someone'll"),
    ("someones", "someone's"),
    ("somethingd", "something'd"),
    ("somethingd've", "something'd've"),
    ("something'dve", "something'd've"),
    ("somethingll", "something'll"),
    ("thats", "that's"),
    ("thered", "there'd"),
    ("thered've", "there'd've"),
    ("there'dve", "there'd've"),
    ("therere", "there're"),
    ("theres", "there's"),
    ("theyd", "they'd"),
    ("theyd've", "they'd've"),
    ("they'dve", "they'd've"),
    ("theyll", "they'll"),
    ("theyre", "they're"),
    ("theyve", "they've"),
    ("twas", "'twas"),
    ("wasnt", "wasn't"),
    ("wed've", "we'd've"),
    ("we'dve", "we'd've"),
    ("weve", "we've"),
    ("werent", "weren't"),
    ("whatll", "what'll"),
    ("whatre", "what're"),
    ("whats", "what's"),
    ("whatve", "what've"),
    ("whens", "when's"),
    ("whered", "where'd"),
    ("wheres", "where's"),
    ("whereve", "where've"),
    ("whod", "who'd"),
    ("whod've", "who'd've"),
    ("who'dve", "who'd've"),
    ("wholl", "who'll"),
    ("whos", "who's"),
    ("whove", "who've"),
    ("whyll", "why'll"),
    ("whyre", "why're"),
    ("whys", "why's"),
    ("wont", "won't"),
    ("wouldve", "would've"),
    ("wouldnt", "wouldn't"),
    ("wouldnt've", "wouldn't've"),
    ("wouldn'tve", "wouldn't've"),
    ("yall", "y'all"),
    ("yall'll", "y'all'll"),
    ("y'allll", "y'all'll"),
    ("yall'd've", "y'all'd've"),
    ("y'alld've", "y'all'd've"),
    ("y'all'dve", "y'all'd've"),
    ("youd", "you'd"),
    ("youd've", "you'd've"),
    ("you'dve", "you'd've"),
    ("youll", "you'll"),
    ("youre", "you're"),
    ("youve", "you've"),
];

fn contraction(word: &str) -> Option<&'static str> {
    CONTRACTIONS
        .iter()
        .find(|(k, _)| *k == word)
        .map(|(_, v)| *v)
}

/// A text longer than [`MAX_TARGET_LENGTH`] characters (AISBench raises `ValueError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("text of {0} characters exceeds the VQA limit of {MAX_TARGET_LENGTH}")]
pub struct TooLong(pub usize);

fn check_len(text: &str) -> Result<(), TooLong> {
    let n = text.chars().count();
    if n > MAX_TARGET_LENGTH {
        Err(TooLong(n))
    } else {
        Ok(())
    }
}

/// `re.search(r'(\d)(,)(\d)', text)`.
fn has_digit_comma_digit(text: &str) -> bool {
    let c: Vec<char> = text.chars().collect();
    c.windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == ',' && w[2].is_ascii_digit())
}

/// `VQAEvalMethod.process_punctuation`.
pub fn process_punctuation(in_text: &str) -> Result<String, TooLong> {
    check_len(in_text)?;
    let comma = has_digit_comma_digit(in_text);
    let mut out = in_text.to_string();
    for p in PUNCT {
        let spaced = in_text.contains(&format!("{p} ")) || in_text.contains(&format!(" {p}"));
        let with = if spaced || comma { "" } else { " " };
        out = out.replace(p, with);
    }
    // period_strip.sub('', out, re.UNICODE): remove '.' not followed by a digit, ≤ 32 times.
    let chars: Vec<char> = out.chars().collect();
    let mut result = String::with_capacity(out.len());
    let mut removed = 0usize;
    for (i, &ch) in chars.iter().enumerate() {
        let next_is_digit = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        if ch == '.' && !next_is_digit && removed < 32 {
            removed += 1;
            continue;
        }
        result.push(ch);
    }
    Ok(result)
}

/// `VQAEvalMethod.process_digit_article`: lower-case, number words → digits, drop articles,
/// fix contractions.
pub fn process_digit_article(in_text: &str) -> Result<String, TooLong> {
    check_len(in_text)?;
    let lower = in_text.to_lowercase();
    let mut words: Vec<String> = Vec::new();
    for word in lower.split_whitespace() {
        let word = manual_map(word).unwrap_or(word);
        if !ARTICLES.contains(&word) {
            words.push(word.to_string());
        }
    }
    for w in words.iter_mut() {
        if let Some(c) = contraction(w) {
            *w = c.to_string();
        }
    }
    Ok(words.join(" "))
}

/// `VQAEvalMethod.remove_special_characters`.
pub fn remove_special_characters(text: &str) -> String {
    let mut s = text.to_string();
    for t in SPECIAL_TOKENS {
        s = s.replace(t, "");
    }
    s
}

/// AISBench `extract_non_reasoning_content`: drops `<think>…</think>` sections (or, with only
/// a closing tag, everything before the last one), then strips.
pub fn extract_non_reasoning_content(text: &str) -> String {
    const START: &str = "<think>";
    const END: &str = "</think>";
    if !text.contains(START) && text.contains(END) {
        return text.rsplit(END).next().unwrap_or("").trim().to_string();
    }
    // re.sub(r'<think>(.*?)</think>', '', text, flags=DOTALL): non-greedy, left to right.
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        match rest.find(START) {
            Some(s) => match rest[s + START.len()..].find(END) {
                Some(e) => {
                    out.push_str(&rest[..s]);
                    rest = &rest[s + START.len() + e + END.len()..];
                }
                None => {
                    out.push_str(rest);
                    break;
                }
            },
            None => {
                out.push_str(rest);
                break;
            }
        }
    }
    out.trim().to_string()
}

/// The evaluator's normalisation of a prediction (after the reasoning post-processor).
pub fn normalize_prediction(pred: &str) -> Result<String, TooLong> {
    let s = pred.replace(['\n', '\t'], " ");
    let s = remove_special_characters(s.trim());
    let s = process_punctuation(&s)?;
    process_digit_article(&s)
}

/// One ground-truth answer: its text and what else its record holds (for the
/// "other answers" comparison, see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GtAnswer {
    pub answer: String,
    /// The rest of the annotation record (e.g. `answer_id`), or the answer's position for
    /// plain-string answer lists.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub identity: serde_json::Value,
}

impl GtAnswer {
    /// Answers from a plain list of strings: compared by position (standard leave-one-out).
    pub fn from_strings<S: AsRef<str>>(answers: &[S]) -> Vec<GtAnswer> {
        answers
            .iter()
            .enumerate()
            .map(|(i, a)| GtAnswer {
                answer: a.as_ref().to_string(),
                identity: serde_json::Value::from(i),
            })
            .collect()
    }
}

/// Score of one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionScore {
    /// The normalised prediction that was matched.
    pub normalized: String,
    /// Mean over the GT answers of `min(1, matches among the others / 3)`, in [0, 1].
    pub score: f64,
    /// AISBench's `detail.correct`: `score > 0.5`.
    pub correct: bool,
    /// Set when the question could not be scored (then `score` is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Scores one prediction against its ground-truth answers (`TEXTEvaluator.score` body).
/// `prediction` is the raw model output; the reasoning post-processor is applied here.
pub fn score_question(prediction: &str, answers: &[GtAnswer]) -> QuestionScore {
    let pred = extract_non_reasoning_content(prediction);
    let normalized = match normalize_prediction(&pred) {
        Ok(n) => n,
        Err(e) => return failed(String::new(), e.to_string()),
    };
    if answers.is_empty() {
        return failed(normalized, "no ground-truth answers".into());
    }
    let mut gts: Vec<GtAnswer> = answers.to_vec();
    let first = &gts[0].answer;
    if gts.iter().any(|g| &g.answer != first) {
        for g in gts.iter_mut() {
            match process_punctuation(&g.answer) {
                Ok(a) => g.answer = a,
                Err(e) => return failed(normalized, format!("ground truth: {e}")),
            }
        }
    }
    let mut total = 0.0;
    for gt in &gts {
        let matches = gts
            .iter()
            .filter(|o| *o != gt && o.answer == normalized)
            .count();
        total += f64::min(1.0, matches as f64 / 3.0);
    }
    let score = total / gts.len() as f64;
    QuestionScore {
        normalized,
        score,
        correct: score > 0.5,
        error: None,
    }
}

fn failed(normalized: String, error: String) -> QuestionScore {
    QuestionScore {
        normalized,
        score: 0.0,
        correct: false,
        error: Some(error),
    }
}

/// Dataset accuracy: `100 × mean(score)`; 0 for an empty set.
pub fn accuracy(scores: &[QuestionScore]) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    100.0 * scores.iter().map(|s| s.score).sum::<f64>() / scores.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_rules() {
        assert_eq!(process_punctuation("hello-world").unwrap(), "hello world");
        assert_eq!(
            process_punctuation("hello - world").unwrap(),
            "hello  world"
        );
        assert_eq!(process_punctuation("3,000").unwrap(), "3000");
        assert_eq!(process_punctuation("yes.").unwrap(), "yes");
        assert_eq!(process_punctuation("1.5").unwrap(), "1.5");
    }

    #[test]
    fn reasoning_is_dropped() {
        assert_eq!(
            extract_non_reasoning_content("Start<think>r</think> End"),
            "Start End"
        );
        assert_eq!(
            extract_non_reasoning_content("This is a test.</think> How are you?"),
            "How are you?"
        );
    }
}
