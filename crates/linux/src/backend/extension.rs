//! [`LinuxExtension`]: one ELF object opened and loaded by libbpf, its programs and maps.

use std::ffi::{OsStr, c_char};
use std::ptr::NonNull;

use kflex_object::{MapType, ProgType};
use libbpf_rs::{AsRawLibbpf, MapCore, MapFlags, Object, ObjectBuilder, ProgramMut};

use super::arena::{ArenaMapping, globals_offset, page_size};
use super::error::{BackendError, Result};
use super::log::Capture;
use super::probe::backend_available;

/// Size of each program's verifier log buffer (libbpf fills it only when a load fails, retrying
/// the load with log level 1).
const LOG_BUF_SIZE: usize = 4 << 20;

/// A program of a loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramInfo {
    /// The program's (function's) name.
    pub name: String,
    /// Its ELF section (`xdp`, `tc`, `syscall`, ...), which gave libbpf its type.
    pub section: String,
    /// Its program type, when kflex knows the type.
    pub prog_type: Option<ProgType>,
}

/// A map of a loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapInfo {
    /// libbpf's name for it: the BTF name, or for global data `<object prefix>.data`,
    /// `.rodata`, `.bss` (look-ups also accept the bare section name, e.g. `.data`).
    pub name: String,
    /// The map type, when kflex knows it.
    pub map_type: Option<MapType>,
    /// The Linux `enum bpf_map_type` value.
    pub linux_type: u32,
    /// Key size in bytes.
    pub key_size: u32,
    /// Value size in bytes.
    pub value_size: u32,
    /// Maximum number of entries (pages for an arena).
    pub max_entries: u32,
}

/// An extension object loaded into the running kernel through libbpf: the same ELF bytes kflex
/// runs, with its heap (the arena map) mapped into this process at the addresses programs use.
/// Programs and maps are released when it is dropped.
#[derive(Debug)]
pub struct LinuxExtension {
    name: String,
    object: Object,
    programs: Vec<ProgramInfo>,
    maps: Vec<MapInfo>,
    arena: Option<ArenaMapping>,
}

impl LinuxExtension {
    /// Opens `bytes` (a BPF ELF relocatable object, as clang writes it) with libbpf and loads every
    /// program and map into the kernel. A program the verifier rejects fails the whole load with
    /// [`BackendError::Rejected`], carrying the verifier log; a process that cannot use BPF gets
    /// [`BackendError::Unavailable`] with the reason.
    pub fn load(name: &str, bytes: &[u8]) -> Result<Self> {
        backend_available().map_err(BackendError::Unavailable)?;
        if !bytes.starts_with(b"\x7fELF") {
            return Err(BackendError::Open {
                object: name.to_string(),
                message: "not an ELF object (no \\x7fELF magic)".into(),
            });
        }
        let capture = Capture::start();
        let open_err = |e: libbpf_rs::Error, capture: Capture| {
            let warnings = capture.finish();
            BackendError::Open {
                object: name.to_string(),
                message: if warnings.is_empty() {
                    e.to_string()
                } else {
                    format!("{e}\n{warnings}")
                },
            }
        };
        let mut builder = ObjectBuilder::default();
        let mut open = match builder.name(name).and_then(|b| b.open_memory(bytes)) {
            Ok(open) => open,
            Err(e) => return Err(open_err(e, capture)),
        };
        // One log buffer per program, so a rejection names its program and keeps its log.
        let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
        for prog in open.progs_mut() {
            let mut buf = vec![0u8; LOG_BUF_SIZE];
            let raw = prog.as_libbpf_object();
            // SAFETY: `raw` is a live `bpf_program` of `open`; the buffer is heap memory owned by
            // `logs`, which outlives the load below (libbpf only writes it during the load), and
            // its length is passed with it.
            let rc = unsafe {
                libbpf_rs::libbpf_sys::bpf_program__set_log_buf(
                    raw.as_ptr(),
                    buf.as_mut_ptr().cast::<c_char>(),
                    buf.len() as _,
                )
            };
            if rc != 0 {
                return Err(open_err(libbpf_rs::Error::from_raw_os_error(-rc), capture));
            }
            logs.push((lossy(prog.name()), buf));
        }
        let object = match open.load() {
            Ok(object) => object,
            Err(e) => {
                return Err(match logs.iter().find(|(_, log)| log[0] != 0) {
                    Some((program, log)) => {
                        drop(capture);
                        BackendError::Rejected {
                            object: name.to_string(),
                            program: program.clone(),
                            message: e.to_string(),
                            log: c_text(log),
                        }
                    }
                    None => open_err(e, capture),
                });
            }
        };
        drop(capture);
        drop(logs);
        let programs = object
            .progs()
            .map(|p| ProgramInfo {
                name: lossy(p.name()),
                section: lossy(p.section()),
                prog_type: prog_type(p.prog_type()),
            })
            .collect();
        let maps = object
            .maps()
            .map(|m| MapInfo {
                name: lossy(m.name()),
                map_type: map_type(m.map_type()),
                linux_type: m.map_type() as u32,
                key_size: m.key_size(),
                value_size: m.value_size(),
                max_entries: m.max_entries(),
            })
            .collect();
        let arena = arena_mapping(&object);
        Ok(LinuxExtension {
            name: name.to_string(),
            object,
            programs,
            maps,
            arena,
        })
    }

    /// The object's name (as given to [`LinuxExtension::load`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The programs, in ELF order.
    pub fn programs(&self) -> &[ProgramInfo] {
        &self.programs
    }

    /// The maps, including libbpf's global-data maps and the arena.
    pub fn maps(&self) -> &[MapInfo] {
        &self.maps
    }

    /// The arena (heap) mapping, when the object declares an arena map.
    pub fn arena(&self) -> Option<&ArenaMapping> {
        self.arena.as_ref()
    }

    /// The program called `name`.
    pub fn program_info(&self, name: &str) -> Result<&ProgramInfo> {
        self.programs
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| self.not_found("program", name))
    }

    /// The loaded libbpf program called `name`.
    pub(crate) fn program(&self, name: &str) -> Result<ProgramMut<'_>> {
        self.object
            .progs_mut()
            .find(|p| p.name() == OsStr::new(name))
            .ok_or_else(|| self.not_found("program", name))
    }

    /// The loaded libbpf map called `name`, or the global-data map of section `name`.
    fn map(&self, name: &str) -> Result<libbpf_rs::Map<'_>> {
        let exact = self.object.maps().find(|m| m.name() == OsStr::new(name));
        let found = exact.or_else(|| {
            name.starts_with('.')
                .then(|| {
                    self.object
                        .maps()
                        .find(|m| m.name().as_encoded_bytes().ends_with(name.as_bytes()))
                })
                .flatten()
        });
        found.ok_or_else(|| self.not_found("map", name))
    }

    fn not_found(&self, kind: &'static str, name: &str) -> BackendError {
        let available = if kind == "program" {
            self.programs.iter().map(|p| p.name.clone()).collect()
        } else {
            self.maps.iter().map(|m| m.name.clone()).collect()
        };
        BackendError::NotFound {
            object: self.name.clone(),
            kind,
            name: name.to_string(),
            available,
        }
    }

    /// The value stored under `key` in map `map` (`None` when absent). Per-CPU maps are read
    /// with [`LinuxExtension::map_lookup_percpu`].
    pub fn map_lookup(&self, map: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let m = self.map(map)?;
        check_key(&m, key)?;
        m.lookup(key, MapFlags::ANY)
            .map_err(|e| op_err(format!("lookup in map {map}"), e))
    }

    /// Each CPU's value under `key` in per-CPU map `map` (`None` when absent).
    pub fn map_lookup_percpu(&self, map: &str, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>> {
        let m = self.map(map)?;
        check_key(&m, key)?;
        m.lookup_percpu(key, MapFlags::ANY)
            .map_err(|e| op_err(format!("per-CPU lookup in map {map}"), e))
    }

    /// Stores `value` under `key` in map `map` (created or replaced).
    pub fn map_update(&self, map: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let m = self.map(map)?;
        check_key(&m, key)?;
        if value.len() != m.value_size() as usize {
            return Err(BackendError::Invalid(format!(
                "map {map} has {}-byte values, not {}",
                m.value_size(),
                value.len()
            )));
        }
        m.update(key, value, MapFlags::ANY)
            .map_err(|e| op_err(format!("update of map {map}"), e))
    }

    /// Removes `key` from map `map`; `false` when it was not there.
    pub fn map_delete(&self, map: &str, key: &[u8]) -> Result<bool> {
        let m = self.map(map)?;
        check_key(&m, key)?;
        match m.delete(key) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(op_err(format!("delete from map {map}"), e)),
        }
    }

    /// Copies `out.len()` bytes of the heap at user address `addr` into `out` (touching a page
    /// the kernel has not allocated yet allocates it, zeroed).
    pub fn arena_read(&self, addr: u64, out: &mut [u8]) -> Result<()> {
        self.arena_span(addr, out.len())?;
        // SAFETY: the span lies inside the arena mapping, which lives as long as `self.object`;
        // the arena is plain shared memory (any byte pattern is valid), and `out` is a distinct
        // Rust buffer.
        unsafe {
            std::ptr::copy_nonoverlapping(addr as usize as *const u8, out.as_mut_ptr(), out.len())
        };
        Ok(())
    }

    /// Copies `data` into the heap at user address `addr`.
    pub fn arena_write(&self, addr: u64, data: &[u8]) -> Result<()> {
        self.arena_span(addr, data.len())?;
        // SAFETY: as in `arena_read`; the mapping is writable (libbpf maps it read-write).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), addr as usize as *mut u8, data.len())
        };
        Ok(())
    }

    fn arena_span(&self, addr: u64, len: usize) -> Result<()> {
        let arena = self
            .arena
            .as_ref()
            .ok_or_else(|| BackendError::Invalid(format!("{} has no arena map", self.name)))?;
        if arena.contains(addr, len) {
            Ok(())
        } else {
            Err(BackendError::Invalid(format!(
                "{len} bytes at {addr:#x} are outside the arena {:#x}..{:#x}",
                arena.base,
                arena.base + arena.size
            )))
        }
    }
}

fn check_key(m: &libbpf_rs::Map<'_>, key: &[u8]) -> Result<()> {
    if key.len() == m.key_size() as usize {
        Ok(())
    } else {
        Err(BackendError::Invalid(format!(
            "map {} has {}-byte keys, not {}",
            lossy(m.name()),
            m.key_size(),
            key.len()
        )))
    }
}

/// The kernel-internal `ENOTSUPP`, which `BPF_PROG_TEST_RUN` returns for program types it cannot
/// run (and which has no name in user space).
const ENOTSUPP: i32 = 524;

/// A failed operation on a loaded object.
pub(crate) fn op_err(op: String, e: libbpf_rs::Error) -> BackendError {
    let message = if errno_of(&e) == Some(ENOTSUPP) {
        "ENOTSUPP: the kernel does not support this for the program's type (it has no \
         BPF_PROG_TEST_RUN for sk_skb programs, for instance)"
            .to_string()
    } else {
        e.to_string()
    };
    BackendError::Op { op, message }
}

/// The errno of a libbpf-rs error, if it carries one. libbpf-rs 0.27 keeps the `io::Error` to
/// itself (it is neither a `source` nor exposed), so this reads the `(os error N)` that its
/// message ends with.
fn errno_of(e: &libbpf_rs::Error) -> Option<i32> {
    let text = e.to_string();
    let start = text.rfind("(os error ")? + "(os error ".len();
    text[start..].strip_suffix(')')?.parse().ok()
}

/// The arena map's mapping: libbpf keeps its address as the map's "initial value".
fn arena_mapping(object: &Object) -> Option<ArenaMapping> {
    let map = object
        .maps()
        .find(|m| m.map_type() == libbpf_rs::MapType::Arena)?;
    let raw: NonNull<libbpf_rs::libbpf_sys::bpf_map> = map.as_libbpf_object();
    let mut globals_size: libbpf_rs::libbpf_sys::size_t = 0;
    // SAFETY: `raw` is a live map of `object`; for an arena map libbpf returns its mmap'ed
    // address (or NULL) and stores the size of the `__arena` globals in `globals_size`.
    let base =
        unsafe { libbpf_rs::libbpf_sys::bpf_map__initial_value(raw.as_ptr(), &mut globals_size) };
    if base.is_null() {
        return None;
    }
    let size = u64::from(map.max_entries()) * page_size();
    let globals_size = globals_size as u64;
    let start = base as u64 + globals_offset(size, globals_size);
    Some(ArenaMapping {
        map: lossy(map.name()),
        base: base as u64,
        size,
        globals: start..start + globals_size,
    })
}

fn prog_type(t: libbpf_rs::ProgramType) -> Option<ProgType> {
    use libbpf_rs::ProgramType as P;
    Some(match t {
        P::SocketFilter => ProgType::SocketFilter,
        P::SchedCls => ProgType::SchedCls,
        P::Xdp => ProgType::Xdp,
        P::SkSkb => ProgType::SkSkb,
        P::Syscall => ProgType::Syscall,
        _ => return None,
    })
}

fn map_type(t: libbpf_rs::MapType) -> Option<MapType> {
    use libbpf_rs::MapType as M;
    Some(match t {
        M::Hash => MapType::Hash,
        M::Array => MapType::Array,
        M::PercpuArray => MapType::PercpuArray,
        M::LruHash => MapType::LruHash,
        M::RingBuf => MapType::Ringbuf,
        M::Arena => MapType::Arena,
        _ => return None,
    })
}

fn lossy(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

/// A NUL-terminated C buffer as text.
fn c_text(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_is_read_from_libbpf_errors() {
        assert_eq!(
            errno_of(&libbpf_rs::Error::from_raw_os_error(524)),
            Some(524)
        );
        assert_eq!(
            errno_of(&libbpf_rs::Error::from_raw_os_error(libc::EPERM)),
            Some(1)
        );
        let e = op_err("x".into(), libbpf_rs::Error::from_raw_os_error(ENOTSUPP));
        assert!(e.to_string().contains("ENOTSUPP"), "{e}");
    }
}
