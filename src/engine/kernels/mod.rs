//! Compute kernels.

pub mod onednn;
pub mod onednn_sys;
