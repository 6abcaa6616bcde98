//! [`RefillThread`]: a background thread keeping an allocator's refill stacks stocked.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::allocator::HeapAllocator;

/// A thread calling [`HeapAllocator::refill`] periodically; dropping the handle stops and joins
/// it.
#[derive(Debug)]
pub struct RefillThread {
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<u64>>,
}

impl RefillThread {
    pub(crate) fn spawn(alloc: Arc<HeapAllocator>, period: Duration) -> Self {
        let (stop, rx) = mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("kflex-refill".into())
            .spawn(move || {
                let mut pushed = 0u64;
                loop {
                    pushed += alloc.refill() as u64;
                    match rx.recv_timeout(period) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return pushed,
                    }
                }
            })
            .expect("spawning the refill thread");
        RefillThread {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Stops the thread and returns how many blocks it pushed in total.
    pub fn stop(mut self) -> u64 {
        self.finish()
    }

    fn finish(&mut self) -> u64 {
        drop(self.stop.take());
        self.handle
            .take()
            .map_or(0, |h| h.join().unwrap_or_default())
    }
}

impl Drop for RefillThread {
    fn drop(&mut self) {
        self.finish();
    }
}
