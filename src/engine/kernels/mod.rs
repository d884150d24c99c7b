//! The kernel layer: every numeric op the model needs, behind a narrow interface (linear,
//! attention, norms, rope, activations) so other backends can be added without touching model
//! code. All `unsafe` code of the crate lives under this module.
//!
//! Grouped by concern: [`gemm`] (the matrix products behind `Linear` and their backends),
//! [`int8`] (W8A8 weights and activations), [`attention`] (segment and paged attention),
//! [`runtime`] (what the machine can run, the kernel plan, the compute pool, ISA dispatch,
//! memory). The element-wise ops ([`ops`], [`bf16`]) and the `Linear` layer ([`linear`]) serve
//! all of them.

pub mod attention;
pub(crate) mod avx512_math;
pub mod bf16;
pub mod gemm;
pub mod int8;
pub mod linear;
pub mod ops;
pub mod runtime;
