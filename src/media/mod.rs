//! Image and video decoding and preprocessing with Hugging Face processor parity.
