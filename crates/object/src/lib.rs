//! kflex-object: loads eBPF ELF objects produced by clang in libbpf conventions.

pub mod map;
pub mod prog_type;

pub use map::{GlobalKind, MapSpec, MapType};
pub use prog_type::{ProgType, SkSkbAttach};
