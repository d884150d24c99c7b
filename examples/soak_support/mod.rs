//! The soak run and its verdict (see `load.rs`).
pub mod load;
pub mod verdict;
