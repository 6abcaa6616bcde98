//! The native baseline: the same C code built with `gcc -O2 -shared` (`libds_<name>.so`), loaded
//! into this process, with its heap in a host buffer.
//!
//! Natively `__arena` is empty, so the structure's globals (`ds_globals`, the mailbox and
//! `kflex_alloc_state`) are ordinary globals of the library, and heap blocks are plain host
//! memory that the host allocator ([`crate::native::NativeInstance`] attaches
//! `kflex_sdk::HeapAllocator`) carves from an `mmap`ed buffer and pushes onto the allocator's
//! refill stacks, exactly as it does for kflex's heap and the Linux arena.
//!
//! Each instance loads its own private copy of the library (the file is copied under a unique
//! name before `dlopen`), so two instances of one structure never share globals.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Structure;
use crate::driver::{Driver, DriverError, check_count};
use crate::heap::{HostAllocator, HostBuffer};
use crate::protocol::{BATCH_MAX, Ctx, Op, OpKind};

/// Bytes of the host buffer the native heap carves blocks from (reserved lazily: pages are only
/// backed once the allocator touches them).
pub const NATIVE_HEAP_SIZE: usize = 256 << 20;

/// Signature of the exported entry points `ds_init`, `ds_update`, `ds_lookup`, `ds_delete`.
type Entry = unsafe extern "C" fn(*mut Ctx) -> i32;

/// Why a native instance could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// This build has no native library for the structure.
    #[error("{0}: no native build (its source did not exist when kflex-datastructures was built)")]
    NotBuilt(Structure),
    /// Copying or opening the library failed.
    #[error("{path}: {message}")]
    Library {
        /// The library file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// `init` or the heap set-up failed.
    #[error("{0}")]
    Setup(String),
}

/// A `dlopen`ed private copy of a native library, closed on drop.
struct Library {
    handle: *mut libc::c_void,
}

impl Library {
    /// Copies `path` under a unique temporary name, opens the copy and removes the file.
    fn open_private(path: &Path) -> Result<Self, NativeError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let lib_err = |message: String| NativeError::Library {
            path: path.to_path_buf(),
            message,
        };
        let copy = std::env::temp_dir().join(format!(
            "kflex-ds-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            path.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("lib.so")
        ));
        std::fs::copy(path, &copy).map_err(|e| lib_err(format!("copying: {e}")))?;
        let c_path = CString::new(copy.as_os_str().as_encoded_bytes())
            .map_err(|_| lib_err("path contains NUL".into()));
        let result = c_path.and_then(|c_path| {
            // SAFETY: a valid NUL-terminated path; the library has no constructors with
            // preconditions (it is our own C code).
            let handle =
                unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
            if handle.is_null() {
                Err(lib_err(dl_error()))
            } else {
                Ok(Library { handle })
            }
        });
        let _ = std::fs::remove_file(&copy);
        result
    }

    /// The exported function `name`.
    fn entry(&self, name: &CStr) -> Result<Entry, String> {
        // SAFETY: `handle` is an open library; `name` is NUL-terminated.
        let sym = unsafe { libc::dlsym(self.handle, name.as_ptr()) };
        if sym.is_null() {
            return Err(format!("{}: {}", name.to_string_lossy(), dl_error()));
        }
        // SAFETY: every `ds_*` symbol is a `int ds_x(struct ds_ctx *)` defined by DS_PROG.
        Ok(unsafe { std::mem::transmute::<*mut libc::c_void, Entry>(sym) })
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle came from dlopen and no function of it runs any more.
        unsafe { libc::dlclose(self.handle) };
    }
}

/// The last `dlerror` message.
fn dl_error() -> String {
    // SAFETY: dlerror returns NULL or a valid NUL-terminated string.
    let msg = unsafe { libc::dlerror() };
    if msg.is_null() {
        "unknown dl error".into()
    } else {
        // SAFETY: non-null, NUL-terminated (checked above).
        unsafe { CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned()
    }
}

/// One initialised structure in the native build.
pub struct NativeInstance {
    structure: Structure,
    entries: [Entry; 3],
    ctx: Ctx,
    mailbox: *mut Op,
    // Field order is drop order: the allocator stops before the buffer and library go away.
    allocator: HostAllocator,
    _heap: HostBuffer,
    _library: Library,
}

// SAFETY: the instance owns its private library copy and heap; nothing in it is tied to the
// thread that created it (the C code keeps no thread-local state).
unsafe impl Send for NativeInstance {}

impl NativeInstance {
    /// Loads a private copy of the structure's native library, reserves its heap
    /// ([`NATIVE_HEAP_SIZE`]), runs `ds_init` and attaches the host allocator.
    pub fn new(structure: Structure) -> Result<Self, NativeError> {
        let path = structure
            .native_library()
            .ok_or(NativeError::NotBuilt(structure))?;
        let library = Library::open_private(path)?;
        let lib_err = |message: String| NativeError::Library {
            path: path.to_path_buf(),
            message,
        };
        let init = library.entry(c"ds_init").map_err(lib_err)?;
        let entries = [
            library.entry(c"ds_update").map_err(lib_err)?,
            library.entry(c"ds_lookup").map_err(lib_err)?,
            library.entry(c"ds_delete").map_err(lib_err)?,
        ];
        let heap = HostBuffer::new(NATIVE_HEAP_SIZE).map_err(NativeError::Setup)?;
        let mut ctx = Ctx::default();
        // SAFETY: `init` is `ds_init` of the library we hold, given a valid context.
        let ret = unsafe { init(&mut ctx) };
        if ret != 0 {
            return Err(NativeError::Setup(format!(
                "{structure}: ds_init returned {ret}"
            )));
        }
        if ctx.mailbox == 0 || !ctx.mailbox.is_multiple_of(8) || ctx.alloc_state == 0 {
            return Err(NativeError::Setup(format!(
                "{structure}: ds_init reported mailbox {:#x}, allocator {:#x}",
                ctx.mailbox, ctx.alloc_state
            )));
        }
        // The library's globals are outside the buffer: the whole buffer may be carved.
        // SAFETY: `alloc_state` is the library's `kflex_alloc_state` (a global of the library,
        // which outlives the allocator: field order), and `heap` is our buffer, also dropped
        // after the allocator; nothing else carves from it.
        let allocator = unsafe { HostAllocator::attach(ctx.alloc_state as *mut u8, heap.range()) }
            .map_err(NativeError::Setup)?;
        allocator.refill();
        Ok(NativeInstance {
            structure,
            entries,
            mailbox: ctx.mailbox as *mut Op,
            ctx,
            allocator,
            _heap: heap,
            _library: library,
        })
    }

    /// The structure.
    pub fn structure(&self) -> Structure {
        self.structure
    }

    /// The context `init` filled in (addresses of the mailbox, allocator state and globals).
    pub fn init_ctx(&self) -> Ctx {
        self.ctx
    }
}

impl Driver for NativeInstance {
    fn engine(&self) -> &str {
        "native"
    }

    fn mailbox(&mut self) -> &mut [Op] {
        // SAFETY: `mailbox` is `ops[0]` of the library's `ds_globals`, BATCH_MAX ops long, alive
        // as long as the library; `&mut self` makes this the only reference to it.
        unsafe { std::slice::from_raw_parts_mut(self.mailbox, BATCH_MAX) }
    }

    fn run(&mut self, op: OpKind, count: usize) -> Result<i64, DriverError> {
        check_count(count)?;
        self.allocator.refill();
        let entry = self.entries[op as usize];
        self.ctx.count = count as u32;
        // SAFETY: a `ds_*` entry of our library, given its context; the heap and mailbox it
        // uses are alive.
        let ret = unsafe { entry(&mut self.ctx) };
        Ok(i64::from(ret))
    }
}
