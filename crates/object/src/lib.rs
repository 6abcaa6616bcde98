//! kflex-object: loads eBPF ELF objects produced by clang in libbpf conventions.

pub mod map;

pub use map::{GlobalKind, MapSpec, MapType};
