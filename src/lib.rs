//! Qwen3-VL inference engine for CPUs.
//!
//! The public surface:
//!
//! * [`pipeline`] — build a pipeline, stream chat / generation events, sampling parameters.
//! * [`service`] — the HTTP server ([`service::Server`]) and its [`service::Settings`].
//! * [`wire`] — the typed wire formats (OpenAI, vLLM, TGI, MindIE, Triton) the server speaks.
//! * [`engine`] — the model level for tools: load a [`engine::Qwen3VlModel`], run `forward`,
//!   `generate_greedy` or batched paged `step`s.
//! * [`tools`] — checkpoint tools: random-weight checkpoints, W8A8 quantization.
//!
//! Everything else (the pipeline stages, media and prompt processing, the kernels, the bench
//! harness) is crate-private; the tests reach it through the `testing` feature, which the
//! crate's dev-dependency on itself turns on.

// Unused-code lints: in the build without `testing`, the internals the tests use (and that
// were public, so never linted, before the surface was narrowed) would all be reported.
#![cfg_attr(not(any(test, feature = "testing")), allow(dead_code, unused_imports))]

/// Modules public to the tests (`testing` feature) and crate-private otherwise.
macro_rules! internal {
    ($($(#[$m:meta])* mod $name:ident;)*) => {
        $(
            $(#[$m])*
            #[cfg(any(test, feature = "testing"))]
            pub mod $name;
            $(#[$m])*
            #[cfg(not(any(test, feature = "testing")))]
            pub(crate) mod $name;
        )*
    };
}

pub mod engine;
pub mod pipeline;
pub mod service;
pub mod tools;
pub mod wire;

internal! {
    mod actors;
    mod bench;
    mod logging;
    mod media;
    mod prompt;
}

#[doc(hidden)]
pub mod cli;
