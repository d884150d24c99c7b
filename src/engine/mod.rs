//! The model and its compute.

pub mod kernels;
