//! Abstract domains of the verifier: tristate numbers ([`Tnum`]), per-width interval bounds
//! ([`View`]) and the scalar domain combining them ([`Scalar`]) with its transfer functions
//! for every ALU operation and conditional refinement for every jump.
//!
//! Soundness contract: for members `x` of `a` and `y` of `b`, the concrete result of an
//! operation is a member of the abstract result; refinement never drops a pair that takes the
//! refined edge; normalisation never drops a member; join and widen contain both inputs.

mod alu;
pub mod bounds;
mod refine;
pub mod scalar;
pub mod tnum;

pub use bounds::View;
pub use scalar::{Empty, Scalar};
pub use tnum::Tnum;

#[cfg(test)]
mod tests;
