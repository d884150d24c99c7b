//! Incremental detokenization never emits broken UTF-8 and reproduces the full decode.

mod preprocess_support;

use preprocess_support::*;
use qwen3vl::prompt::{IncrementalDetokenizer, Tokenizer};

fn stream(tok: &Tokenizer, text: &str, skip_special: bool) -> (Vec<String>, String) {
    let ids = tok.encode(text).unwrap();
    let mut d = IncrementalDetokenizer::new(tok.clone(), skip_special);
    let mut deltas = Vec::new();
    for &id in &ids {
        deltas.push(d.push(id).unwrap());
    }
    deltas.push(d.flush().unwrap());
    (deltas, tok.decode(&ids, skip_special).unwrap())
}

#[test]
fn multibyte_text_streams_cleanly() {
    let tok = Tokenizer::from_file(&tokenizer_json()).unwrap();
    let text = "Grüße 🙂🚀 漢字かな 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 — naïve café. ﷽ 👩‍👩‍👧‍👦 end";
    let (deltas, full) = stream(&tok, text, false);
    assert_eq!(full, text);
    for d in &deltas {
        assert!(
            !d.contains('\u{FFFD}'),
            "delta with a replacement char: {d:?}"
        );
    }
    assert_eq!(deltas.concat(), full);
    // Some multi-token characters must actually have been held back.
    let ids = tok.encode(text).unwrap();
    assert!(ids.len() > deltas.iter().filter(|d| !d.is_empty()).count());
}

#[test]
fn special_tokens_skipped_or_kept() {
    let tok = Tokenizer::from_file(&tokenizer_json()).unwrap();
    let text = "Hi<|im_end|>\n<|im_start|>assistant\nyo";
    let (deltas, full) = stream(&tok, text, true);
    assert_eq!(deltas.concat(), full);
    assert_eq!(full, "Hi\nassistant\nyo");
    let (deltas, full) = stream(&tok, text, false);
    assert_eq!(deltas.concat(), text);
    assert_eq!(full, text);
}

#[test]
fn flush_emits_incomplete_tail() {
    let tok = Tokenizer::from_file(&tokenizer_json()).unwrap();
    // A character that the BPE splits into several byte-level tokens.
    let ids = ["𝔘", "﷽", "𓀀", "🦩"]
        .iter()
        .map(|c| tok.encode(c).unwrap())
        .find(|ids| ids.len() > 1)
        .expect("some rare character spans several tokens");
    let mut d = IncrementalDetokenizer::new(tok.clone(), false);
    assert_eq!(d.push(ids[0]).unwrap(), "");
    let tail = d.flush().unwrap();
    assert!(tail.contains('\u{FFFD}'));
}
