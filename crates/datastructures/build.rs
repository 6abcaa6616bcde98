//! Compiles every `datastructures/bpf/<name>.bpf.c` twice into `OUT_DIR`: with clang-19 into the
//! BPF object `<name>.bpf.o` (embedded by `src/lib.rs`), and with gcc -O2 into the native shared
//! library `libds_<name>.so` (the host baseline, opened by `native::NativeInstance`). Generates the
//! table `structures.rs` listing what was built, so structures whose source does not exist yet are
//! simply absent.
//!
//! `KFLEX_CLANG` and `KFLEX_CC` override the two compilers.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

/// Flags of the BPF build (the same as every kflex extension).
const BPF_CFLAGS: &[&str] = &[
    "-O2", "-g", "-target", "bpf", "-mcpu=v4", "-Wall", "-Werror",
];

/// Flags of the native build.
const NATIVE_CFLAGS: &[&str] = &[
    "-O2",
    "-g",
    "-shared",
    "-fPIC",
    "-fvisibility=hidden",
    "-Wall",
    "-Werror",
];

/// The SDK header every structure includes; without it nothing can be built yet.
const SDK_HEADER: &str = "sdk/include/kflex/kflex.h";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = fs::canonicalize(manifest_dir.join("../.."))
        .unwrap_or_else(|e| fail(&format!("{}/../..: {e}", manifest_dir.display())));
    let src_dir = root.join("datastructures/bpf");
    let includes = [
        root.join("sdk/include"),
        root.join("datastructures/include"),
    ];

    println!("cargo:rerun-if-env-changed=KFLEX_CLANG");
    println!("cargo:rerun-if-env-changed=KFLEX_CC");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", src_dir.display());
    for dir in &includes {
        println!("cargo:rerun-if-changed={}", dir.display());
        rerun_for_headers(dir);
    }

    let mut table = String::from("static BUILT: &[Built] = &[\n");
    let sdk_header = root.join(SDK_HEADER);
    println!("cargo:rerun-if-changed={}", sdk_header.display());
    if sdk_header.is_file() {
        let clang = env::var_os("KFLEX_CLANG").unwrap_or_else(|| OsString::from("clang-19"));
        let cc = env::var_os("KFLEX_CC").unwrap_or_else(|| OsString::from("gcc"));
        for source in list_sources(&src_dir) {
            println!("cargo:rerun-if-changed={}", source.display());
            let file = source.file_name().and_then(|s| s.to_str()).unwrap_or("");
            let Some(name) = file.strip_suffix(".bpf.c") else {
                continue;
            };
            let object = out_dir.join(format!("{name}.bpf.o"));
            let native = out_dir.join(format!("libds_{name}.so"));
            let mut bpf = Command::new(&clang);
            bpf.args(BPF_CFLAGS).arg("-c");
            run(bpf, &includes, &source, &object);
            let mut gcc = Command::new(&cc);
            gcc.args(NATIVE_CFLAGS);
            run(gcc, &includes, &source, &native);
            writeln!(
                table,
                "    Built {{ name: {name:?}, object: include_aligned!({:?}), native: {:?} }},",
                path_str(&object),
                path_str(&native),
            )
            .expect("writing to a String cannot fail");
        }
    } else {
        println!(
            "cargo:warning={} does not exist yet: no data-structure object is built",
            sdk_header.display()
        );
    }
    table.push_str("];\n");
    fs::write(out_dir.join("structures.rs"), table)
        .unwrap_or_else(|e| fail(&format!("writing {}/structures.rs: {e}", out_dir.display())));
}

/// Asks cargo to rebuild when any header under `dir` changes.
fn rerun_for_headers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            rerun_for_headers(&path);
        } else if path.extension().is_some_and(|e| e == "h") {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

/// The `*.bpf.c` files of `dir`, sorted by name (none if the directory does not exist).
fn list_sources(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sources: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_str().is_some_and(|s| s.ends_with(".bpf.c")))
        .collect();
    sources.sort();
    sources
}

/// Runs one compiler invocation, failing the build with its diagnostics on error.
fn run(mut cmd: Command, includes: &[PathBuf], source: &Path, output: &Path) {
    for dir in includes {
        cmd.arg("-I").arg(dir);
    }
    cmd.arg(source).arg("-o").arg(output);
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| fail(&format!("running {program}: {e}")));
    if !out.status.success() {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        fail(&format!(
            "{}: {program} failed ({})",
            source.display(),
            out.status
        ));
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| fail(&format!("{}: path is not UTF-8", path.display())))
}

/// Prints `msg` as the build's error line and stops.
fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    println!("cargo:warning={msg}");
    exit(1);
}
