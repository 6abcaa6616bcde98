//! Compiles every `extensions/*.c` into a BPF ELF object in `OUT_DIR` and generates the table of
//! examples that `src/lib.rs` embeds.
//!
//! The compiler is `clang-19` unless the environment variable `KFLEX_CLANG` names another one.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, exit};

/// Flags every extension is built with (warnings are errors: examples must stay warning-free).
const CFLAGS: &[&str] = &[
    "-O2", "-g", "-target", "bpf", "-mcpu=v4", "-Wall", "-Werror",
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let root = fs::canonicalize(manifest_dir.join("../.."))
        .unwrap_or_else(|e| fail(&format!("{}/../..: {e}", manifest_dir.display())));
    let ext_dir = root.join("extensions");
    let include_dir = root.join("sdk/include");

    println!("cargo:rerun-if-env-changed=KFLEX_CLANG");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", ext_dir.display());
    println!("cargo:rerun-if-changed={}", include_dir.display());

    let clang = env::var_os("KFLEX_CLANG").unwrap_or_else(|| OsString::from("clang-19"));
    check_clang(&clang);

    let sources = list_sources(&ext_dir);
    let mut table = String::from("static EXAMPLES: &[Example] = &[\n");
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
        let name = source
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_else(|| fail(&format!("{}: file name is not UTF-8", source.display())));
        let object = out_dir.join(format!("{name}.o"));
        compile(&clang, &include_dir, source, &object);
        writeln!(
            table,
            "    Example {{ name: {name:?}, object: include_aligned!({:?}), source: include_str!({:?}) }},",
            path_str(&object),
            path_str(source),
        )
        .expect("writing to a String cannot fail");
    }
    table.push_str("];\n");
    fs::write(out_dir.join("examples.rs"), table)
        .unwrap_or_else(|e| fail(&format!("writing {}/examples.rs: {e}", out_dir.display())));
}

/// Stops the build with one clear line when the compiler cannot be run at all.
fn check_clang(clang: &OsString) {
    match Command::new(clang).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(_) | Err(_) if env::var_os("KFLEX_CLANG").is_some() => fail(&format!(
            "KFLEX_CLANG={} cannot be run: point it at clang-19 or unset it",
            clang.to_string_lossy()
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => fail(
            "clang-19 not found: run scripts/install-deps.sh (apt-get install -y clang-19 llvm-19)",
        ),
        _ => fail(
            "clang-19 not found: run scripts/install-deps.sh (apt-get install -y clang-19 llvm-19)",
        ),
    }
}

/// The `*.c` files of `dir`, sorted by name so the table order is stable.
fn list_sources(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    let mut sources: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "c") && p.is_file())
        .collect();
    sources.sort();
    if sources.is_empty() {
        fail(&format!("{}: no extension sources (*.c)", dir.display()));
    }
    sources
}

/// Runs the compiler on one extension, failing the build with its diagnostics on error.
fn compile(clang: &OsString, include_dir: &Path, source: &Path, object: &Path) {
    let output = Command::new(clang)
        .args(CFLAGS)
        .arg("-I")
        .arg(include_dir)
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .output()
        .unwrap_or_else(|e| fail(&format!("running {}: {e}", clang.to_string_lossy())));
    if !output.status.success() {
        eprint!("{}", String::from_utf8_lossy(&output.stderr));
        fail(&format!(
            "{}: clang failed ({})",
            source.display(),
            output.status
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
