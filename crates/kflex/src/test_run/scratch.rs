//! What consecutive test-runs of one extension on one thread reuse: the memory map holding the
//! extension's map regions, the execution environment, and the prepared run of the last program
//! type (its context and packet buffers and their regions, [reset](PreparedRun::reset) to each
//! call's input). A call takes its extension's entry out of the thread's cache and puts it back
//! when it is done, so a test-run costs what its runs cost plus copying the input in and the
//! output out, not building all of this again.
//!
//! Nothing observable changes: a reset run is exactly what a fresh `prepare` builds, the memory
//! map holds the same regions as one built for the call (map regions, then the run's), and the
//! environment is handed over empty (no trace lines, no held resources). The one difference: the
//! environment's `bpf_get_prandom_u32` generator continues its sequence instead of being seeded
//! again for every call.
//!
//! Entries are keyed by the extension's map table. An entry holds a [`Weak`] reference, so it
//! never keeps the table (and the memory behind its regions) alive, while the table's
//! allocation cannot be reused by another table as long as the entry exists: the same address
//! means the same table. Entries of dropped extensions are discarded before their memory map is
//! used again.

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use kflex_hooks::{HookError, PreparedRun};
use kflex_object::ProgType;
use kflex_runtime::maps::MapTable;
use kflex_runtime::{ExecEnv, MemoryMap};

use crate::error::{Error, Result};

/// Entries kept per thread (one per extension test-run on the thread most recently).
const CACHED: usize = 4;

thread_local! {
    // Boxed: entries move out of and back into the cache on every call.
    #[allow(clippy::vec_box)]
    static CACHE: RefCell<Vec<Box<Scratch>>> = const { RefCell::new(Vec::new()) };
}

/// A prepared entry's parts, for one call's runs.
pub(super) struct Parts<'s> {
    /// The memory map (map regions and the run's).
    pub mem: &'s mut MemoryMap,
    /// The environment.
    pub env: &'s mut ExecEnv,
    /// The run, installed in `mem`.
    pub run: &'s mut PreparedRun,
}

/// The reusable state of test-runs of one extension (see the module docs).
pub(super) struct Scratch {
    /// The extension's map table (the key).
    table: Weak<MapTable>,
    /// The table's regions, then those of `run` while it is installed.
    mem: MemoryMap,
    /// Regions of the table in `mem`.
    map_regions: usize,
    /// The environment; its `maps` is set only while a call holds the entry.
    env: ExecEnv,
    /// The prepared run of the last program type, installed in `mem`.
    run: Option<PreparedRun>,
}

impl Scratch {
    /// This thread's entry for `maps` (taken out of the cache, or new), its environment set up
    /// for runs on `cpu`.
    pub fn take(maps: &Arc<MapTable>, cpu: u32) -> Result<Box<Scratch>> {
        let key = Arc::as_ptr(maps);
        // `try_with`: a test-run made while the thread exits (from another thread-local's
        // destructor) finds the cache gone and builds its entry afresh.
        let cached = CACHE
            .try_with(|c| {
                let mut c = c.borrow_mut();
                let pos = c.iter().position(|s| Weak::as_ptr(&s.table) == key)?;
                Some(c.remove(pos))
            })
            .ok()
            .flatten();
        let mut scratch = match cached {
            Some(s) => s,
            None => Box::new(Scratch::new(maps)?),
        };
        scratch.env.maps = Some(Arc::clone(maps));
        scratch.env.cpu = cpu;
        Ok(scratch)
    }

    /// A new entry for `maps`.
    fn new(maps: &Arc<MapTable>) -> Result<Scratch> {
        // SAFETY: the map regions describe value memory owned by the extension's `MapTable`,
        // which is allocated outside Rust references and never moves. The memory map is only
        // used by calls that hold the table (`take` finds this entry only through a live
        // `Arc` of it); entries of dropped tables are dropped without their map being used.
        let mem = unsafe { maps.memory_map() }.map_err(Error::Input)?;
        Ok(Scratch {
            table: Arc::downgrade(maps),
            map_regions: mem.regions().len(),
            mem,
            env: ExecEnv::default(),
            run: None,
        })
    }

    /// The prepared run for `prog_type` on `data_in`/`ctx_in`, installed in `self.mem`: the
    /// entry's run reset to the input, or a new one (replacing a run of another type).
    pub fn prepare(
        &mut self,
        prog_type: ProgType,
        data_in: &[u8],
        ctx_in: Option<&[u8]>,
    ) -> Result<Parts<'_>> {
        let input_error = |e: HookError| Error::Input(e.to_string());
        match self.run.take() {
            Some(mut run) if run.prog_type() == prog_type => {
                let reset = run.reset(&mut self.mem, data_in, ctx_in);
                // On rejected input the run is unchanged (and stays installed).
                self.run = Some(run);
                reset.map_err(input_error)?;
            }
            other => {
                if let Some(old) = other {
                    old.uninstall(&mut self.mem);
                }
                self.run = Some(
                    kflex_hooks::prepare_from(prog_type, data_in, ctx_in).map_err(input_error)?,
                );
            }
        }
        let Scratch { mem, env, run, .. } = self;
        let run = run
            .as_mut()
            .ok_or_else(|| Error::Input("no prepared run".into()))?;
        if !run.is_installed() {
            // SAFETY: the run owns the buffers its regions describe and stays in `self.run`
            // while installed; it is uninstalled from `self.mem` before it is dropped (above
            // when replaced, in `Drop`), and the map is only used on this thread.
            unsafe { run.install(mem) }.map_err(input_error)?;
        }
        Ok(Parts { mem, env, run })
    }

    /// Returns the entry to this thread's cache, if its memory map holds exactly the table's
    /// regions and its run's (a call that left anything else behind drops it instead).
    pub fn put_back(mut self: Box<Self>) {
        self.env.maps = None;
        let run_regions = self.run.as_ref().map_or(0, PreparedRun::installed_regions);
        let clean = self.mem.regions().len() == self.map_regions + run_regions
            && self.env.trace.is_empty()
            && self.env.resources.held() == 0;
        if !clean {
            return;
        }
        let mut evicted = Vec::new();
        // During thread exit the cache may be gone: the entry is then dropped with `evicted`.
        let mut entry = Some(self);
        let _ = CACHE.try_with(|c| {
            let mut c = c.borrow_mut();
            let Some(entry) = entry.take() else {
                return;
            };
            // Entries of dropped extensions, and another entry of the same table (made by a
            // nested call), give way.
            let key = Weak::as_ptr(&entry.table);
            let mut i = 0;
            while i < c.len() {
                if c[i].table.strong_count() == 0 || Weak::as_ptr(&c[i].table) == key {
                    evicted.push(c.remove(i));
                } else {
                    i += 1;
                }
            }
            if c.len() >= CACHED {
                evicted.push(c.remove(0));
            }
            c.push(entry);
        });
        // Dropped outside the cache's borrow (dropping uninstalls runs).
        drop(evicted);
        drop(entry);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(run) = self.run.take() {
            run.uninstall(&mut self.mem);
        }
    }
}
