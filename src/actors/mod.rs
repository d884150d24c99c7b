//! The streaming pipeline, one folder per stage, connected by bounded actix mailboxes:
//!
//! 1. [`media`] — validate, tokenize, decode and preprocess media (blocking pool);
//! 2. [`vision`] — batch visual items across requests and run the vision tower (own thread);
//! 3. and 4. [`llm`] — continuous-batching scheduler and model runner (engine thread): prefill
//!    and decode of all running sequences in one step;
//! 5. [`stream`] — detokenize, stop strings, deliver events to each request's stream.
//!
//! Requests are plain data ([`request`]) moved from stage to stage with `Addr::send`, which
//! waits for capacity, so a burst makes producers wait instead of growing queues. Each stage
//! has one bounded queue: the actor's mailbox for the stages that run on the actor system
//! (media, stream), and a bounded crossbeam [`bridge`] in front of the thread for the stages
//! that own one (vision, LLM), whose actors keep a one-message hand-off slot.

pub mod bridge;
pub mod error;
pub mod llm;
pub mod media;
pub mod request;
pub mod stream;
pub mod vision;
