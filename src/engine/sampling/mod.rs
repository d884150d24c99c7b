//! Per-request sampling: parameters and their checkpoint defaults ([`params`]), the logits
//! processor + sampler ([`sampler`]), a seedable RNG ([`rng`]) and stop-string matching on the
//! detokenized stream ([`stop`]).

pub mod params;
pub mod rng;
pub mod sampler;
pub mod stop;

pub use params::{GenerationDefaults, ResolvedSampling, SamplingError, SamplingParams};
pub use sampler::{Sampled, Sampler};
pub use stop::{StopMatcher, StopResult};
