//! Tokenizer, chat template, placeholder expansion and incremental detokenization.
