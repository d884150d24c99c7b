//! Typed wire formats shared by the server (`crate::service`) and the bench (`crate::bench`).
pub mod openai;
