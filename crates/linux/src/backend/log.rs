//! libbpf's own messages (warnings such as "failed to mmap arena" or a relocation it cannot
//! apply), captured per thread while this back end opens and loads an object so that they end up
//! in the error instead of only on stderr.
//!
//! libbpf has one process-wide print callback; this module installs it once. Messages printed
//! while a [`Capture`] is active on the calling thread (libbpf prints synchronously from the
//! thread that called it) are collected; other warnings go to stderr as libbpf would print them.

use std::cell::RefCell;
use std::io::Write as _;
use std::sync::Once;

use libbpf_rs::PrintLevel;

thread_local! {
    static CAPTURED: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn callback(level: PrintLevel, msg: String) {
    let captured = CAPTURED.with(|c| match c.borrow_mut().as_mut() {
        Some(buf) => {
            buf.push_str(&msg);
            true
        }
        None => false,
    });
    if !captured && level == PrintLevel::Warn {
        let _ = std::io::stderr().write_all(msg.as_bytes());
    }
}

/// Collects libbpf's warnings printed on this thread until [`Capture::finish`] (or drop).
pub(crate) struct Capture(());

impl Capture {
    /// Starts collecting (installing the callback on first use).
    pub(crate) fn start() -> Self {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            libbpf_rs::set_print(Some((PrintLevel::Warn, callback)));
        });
        CAPTURED.with(|c| *c.borrow_mut() = Some(String::new()));
        Capture(())
    }

    /// Stops collecting and returns what was printed, trimmed.
    pub(crate) fn finish(self) -> String {
        let text = CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default();
        text.trim_end().to_string()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        CAPTURED.with(|c| c.borrow_mut().take());
    }
}
