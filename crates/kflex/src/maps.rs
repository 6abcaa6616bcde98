//! Host access to an extension's maps.

use kflex_object::{MapSpec, MapType};

use crate::error::{Error, Result};
use crate::extension::Extension;

/// A handle on one map of an [`Extension`], for the host side: lookups, updates, deletes, key
/// iteration, per-CPU values and ring-buffer records. Keys and values are raw bytes of exactly the
/// map's key and value sizes, as in the Linux `bpf()` map commands.
#[derive(Clone, Copy)]
pub struct MapRef<'a> {
    ext: &'a Extension,
    index: usize,
}

impl<'a> MapRef<'a> {
    pub(crate) fn new(ext: &'a Extension, index: usize) -> Self {
        MapRef { ext, index }
    }

    /// The map's index in the extension.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The map's specification (name, type, sizes).
    pub fn spec(&self) -> &'a MapSpec {
        &self.ext.specs[self.index]
    }

    /// The map's name.
    pub fn name(&self) -> &'a str {
        &self.spec().name
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Map {
            map: self.name().to_string(),
            reason: e.to_string(),
        }
    }

    /// The value stored under `key`, if any. Per-CPU arrays return every CPU's value in Linux's
    /// user-space layout (one value per CPU, each padded to 8 bytes, concatenated).
    pub fn lookup(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.ext
            .maps
            .lookup(self.index, key)
            .map_err(|e| self.err(e))
    }

    /// Every CPU's value stored under `key` of a per-CPU map.
    pub fn lookup_percpu(&self, key: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.ext
            .maps
            .lookup_percpu(self.index, key)
            .map_err(|e| self.err(e))
    }

    /// Stores `value` under `key` with Linux flags (`BPF_ANY` 0, `BPF_NOEXIST` 1, `BPF_EXIST` 2).
    /// Per-CPU arrays take every CPU's value in the layout [`MapRef::lookup`] returns.
    pub fn update(&self, key: &[u8], value: &[u8], flags: u64) -> Result<()> {
        self.ext
            .maps
            .update(self.index, key, value, flags)
            .map_err(|e| self.err(e))
    }

    /// Deletes the element under `key`.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        self.ext
            .maps
            .delete(self.index, key)
            .map_err(|e| self.err(e))
    }

    /// Every key present in the map.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        self.ext.maps.keys(self.index).map_err(|e| self.err(e))
    }

    /// Consumes every record submitted to a ring buffer so far, in order (discarded records are
    /// skipped).
    pub fn ringbuf_records(&self) -> Result<Vec<Vec<u8>>> {
        if self.spec().map_type != MapType::Ringbuf {
            return Err(self.err(format!(
                "not a ring buffer (type {})",
                self.spec().map_type.name()
            )));
        }
        self.ext
            .maps
            .ringbuf_consume(self.index)
            .map_err(|e| self.err(e))
    }

    /// Reads `len` bytes at `offset` from the start of an arena map's heap.
    pub fn heap_read(&self, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.ext
            .maps
            .heap_read(self.index, offset, len)
            .map_err(|e| self.err(e))
    }

    /// Writes `data` at `offset` from the start of an arena map's heap.
    pub fn heap_write(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.ext
            .maps
            .heap_write(self.index, offset, data)
            .map_err(|e| self.err(e))
    }

    /// The value under a 4-byte native-endian key, decoded as a native-endian `u64` (the common
    /// shape of counter maps; also works for `.data`/`.bss` maps with key 0).
    pub fn lookup_u64(&self, key: u32, offset: usize) -> Result<Option<u64>> {
        let Some(v) = self.lookup(&key.to_ne_bytes())? else {
            return Ok(None);
        };
        let bytes = offset
            .checked_add(8)
            .and_then(|end| v.get(offset..end))
            .ok_or_else(|| {
                self.err(format!(
                    "no u64 at offset {offset} of a {}-byte value",
                    v.len()
                ))
            })?;
        let mut b = [0u8; 8];
        b.copy_from_slice(bytes);
        Ok(Some(u64::from_ne_bytes(b)))
    }
}

impl std::fmt::Debug for MapRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MapRef")
            .field("index", &self.index)
            .field("spec", self.spec())
            .finish()
    }
}
