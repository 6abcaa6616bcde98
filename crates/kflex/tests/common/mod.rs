//! Shared test support.

pub mod cases;
pub mod cli;
