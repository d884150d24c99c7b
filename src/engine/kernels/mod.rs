//! The kernel layer: every numeric op the model needs, behind a narrow interface (linear,
//! attention, norms, rope, activations) so other backends can be added without touching model
//! code. All `unsafe` code of the crate lives under this module.

pub mod attention;
pub mod bf16;
pub mod gemm_portable;
pub mod linear;
pub mod ops;
pub mod pool;

/// The fastest GEMM backend available on this machine, if any besides the portable path.
pub fn default_backend() -> Option<Box<dyn linear::FastBackend>> {
    None
}
