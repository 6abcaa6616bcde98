//! Running the `kflex` binary in tests: invocation, output text, scratch files.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Runs `kflex ARGS` and collects its output.
pub fn kflex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kflex"))
        .args(args)
        .output()
        .expect("kflex runs")
}

/// Runs `kflex ARGS` with `stdin` as its standard input.
pub fn kflex_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kflex"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kflex runs");
    let written = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A kflex that refuses its arguments may exit before reading its input: the pipe is then
    // closed under the write, and what counts is the exit status and output checked by the test.
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing kflex's stdin: {e}"
        );
    }
    child.wait_with_output().unwrap()
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `bytes` to a scratch file of this test binary and returns its path.
pub fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kflex-{}", env!("CARGO_CRATE_NAME")));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    // Tests of one binary run in parallel and may write the same file (e.g. an example object):
    // write a private copy and rename it into place, so a reader never sees a partial file.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let part = dir.join(format!(
        ".{name}.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&part, bytes).unwrap();
    std::fs::rename(&part, &p).unwrap();
    p
}

/// A bundled example's object written out to a scratch file (rather than relying on the build
/// directory layout).
pub fn example_object(name: &str) -> PathBuf {
    tmp(
        &format!("{name}.o"),
        kflex_examples::get(name).unwrap().object,
    )
}
