//! The model and its compute.
