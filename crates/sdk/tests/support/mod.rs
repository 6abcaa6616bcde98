//! Builds the tests' C files natively with gcc and loads them.

#![allow(dead_code)]

use std::ffi::{CString, c_void};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `tests/c/<name>`.
pub fn c_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(name)
}

fn scratch(stem: &str, ext: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "kflex-sdk-{stem}-{}-{}.{ext}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// True if gcc runs; otherwise reports the skip.
pub fn have_gcc() -> bool {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        kflex_testutil::skip("gcc not found");
    }
    ok
}

/// Compiles `src` with `gcc -O2 -Wall -Werror -I sdk/include` plus `extra` into `out`.
fn gcc(src: &Path, out: &Path, extra: &[&str]) {
    let res = Command::new("gcc")
        .args(["-O2", "-Wall", "-Werror", "-I"])
        .arg(kflex_testutil::sdk_include())
        .args(extra)
        .arg(src)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run gcc");
    assert!(
        res.status.success(),
        "gcc failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Compiles and runs a native program, returning its standard output.
pub fn run_native(src: &Path) -> String {
    let exe = scratch("prog", "bin");
    gcc(src, &exe, &[]);
    let out = Command::new(&exe)
        .output()
        .expect("run the compiled program");
    let _ = std::fs::remove_file(&exe);
    assert!(out.status.success(), "{} failed", exe.display());
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// A shared object built with gcc -O2 -shared and loaded with dlopen (kept loaded).
pub struct Lib {
    handle: *mut c_void,
}

// SAFETY: the handle is only used for dlsym, which is thread-safe.
unsafe impl Send for Lib {}
// SAFETY: as above.
unsafe impl Sync for Lib {}

impl Lib {
    /// Builds `src` into a fresh shared object and loads it privately.
    pub fn build(src: &Path) -> Lib {
        let so = scratch("lib", "so");
        gcc(src, &so, &["-fPIC", "-shared"]);
        let path = CString::new(so.to_str().expect("UTF-8 path")).expect("no NUL");
        // SAFETY: dlopen with a valid C string; the library has no constructors.
        let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        let _ = std::fs::remove_file(&so);
        assert!(!handle.is_null(), "dlopen {} failed", so.display());
        Lib { handle }
    }

    /// The address of symbol `name`.
    pub fn sym(&self, name: &str) -> *mut c_void {
        let c = CString::new(name).expect("no NUL");
        // SAFETY: valid handle and C string.
        let p = unsafe { libc::dlsym(self.handle, c.as_ptr()) };
        assert!(!p.is_null(), "symbol {name} missing");
        p
    }
}

/// An anonymous private mapping used as a native heap; unmapped on drop.
pub struct Buffer {
    pub base: u64,
    pub len: usize,
}

impl Buffer {
    pub fn new(len: usize) -> Buffer {
        // SAFETY: anonymous mapping request with no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap");
        Buffer {
            base: p as u64,
            len,
        }
    }

    pub fn range(&self) -> std::ops::Range<u64> {
        self.base..self.base + self.len as u64
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what new() mapped.
        unsafe { libc::munmap(self.base as *mut c_void, self.len) };
    }
}
