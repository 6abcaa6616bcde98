//! The request protocol of `datastructures/include/ds/common.h`, mirrored with `#[repr(C)]`.
//!
//! The host writes up to [`BATCH_MAX`] [`Op`]s into the mailbox, sets [`Ctx::count`] and runs one
//! of the programs named by [`OpKind`]; each op's `result` (and a found lookup's `value`) is
//! written back in place, and the program returns how many ops have a result > 0.

use std::cmp::Ordering;

/// Bytes of a key.
pub const KEY_SIZE: usize = 32;
/// Bytes of a value.
pub const VALUE_SIZE: usize = 64;
/// Largest batch: the mailbox holds this many ops.
pub const BATCH_MAX: usize = 1024;
/// Capacity of the LRU cache (`DS_LRU_CAPACITY` in `ds/lru.h`).
pub const LRU_CAPACITY: usize = 65536;

/// Update result: the key was inserted.
pub const INSERTED: i64 = 1;
/// Update result: the key existed and its value was replaced.
pub const REPLACED: i64 = 2;
/// Lookup result: found (the value was copied into the op).
pub const FOUND: i64 = 1;
/// Lookup/delete result: the key is absent.
pub const ABSENT: i64 = 0;
/// Delete result: the key was removed.
pub const REMOVED: i64 = 1;
/// Update result: no memory (`-ENOMEM`).
pub const ENOMEM: i64 = -12;
/// Result when the structure's lock could not be taken (`-EBUSY`, Linux loop budget spent).
pub const EBUSY: i64 = -16;

/// A key.
pub type Key = [u8; KEY_SIZE];
/// A value.
pub type Value = [u8; VALUE_SIZE];

/// One request (`struct ds_op`, 104 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The key.
    pub key: Key,
    /// Input of update, output of a found lookup (sketches: the estimate, little-endian u64 in
    /// bytes 0..8).
    pub value: Value,
    /// The op's result (see the constants of this module).
    pub result: i64,
}

impl Default for Op {
    fn default() -> Self {
        Op {
            key: [0; KEY_SIZE],
            value: [0; VALUE_SIZE],
            result: 0,
        }
    }
}

impl Op {
    /// An op for `key` with `value`, result cleared.
    pub fn new(key: Key, value: Value) -> Self {
        Op {
            key,
            value,
            result: 0,
        }
    }
}

/// The context of every program (`struct ds_ctx`, 40 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ctx {
    /// Set by `init`: user address of the mailbox (`ops[0]`).
    pub mailbox: u64,
    /// Set by `init`: user address of the allocator state (`kflex_alloc_state`).
    pub alloc_state: u64,
    /// Set by `init`: first user address of the object's heap globals.
    pub globals: u64,
    /// Set by `init`: bytes from `globals` that the host must not carve blocks from.
    pub globals_size: u64,
    /// Number of ops in the mailbox (at most [`BATCH_MAX`]).
    pub count: u32,
    /// The program's return value.
    pub ret: i32,
}

/// Size of [`Ctx`] in bytes.
pub const CTX_SIZE: usize = std::mem::size_of::<Ctx>();

const _: () = assert!(std::mem::size_of::<Op>() == 104);
const _: () = assert!(CTX_SIZE == 40);

impl Ctx {
    /// The context as the bytes a `syscall` program receives (little-endian, as BPF is here).
    pub fn to_bytes(&self) -> [u8; CTX_SIZE] {
        let mut b = [0u8; CTX_SIZE];
        b[0..8].copy_from_slice(&self.mailbox.to_le_bytes());
        b[8..16].copy_from_slice(&self.alloc_state.to_le_bytes());
        b[16..24].copy_from_slice(&self.globals.to_le_bytes());
        b[24..32].copy_from_slice(&self.globals_size.to_le_bytes());
        b[32..36].copy_from_slice(&self.count.to_le_bytes());
        b[36..40].copy_from_slice(&self.ret.to_le_bytes());
        b
    }

    /// Sets `count` in context bytes, as each batch needs (`count` is at most [`BATCH_MAX`]).
    pub fn set_count(bytes: &mut [u8; CTX_SIZE], count: usize) {
        bytes[32..36].copy_from_slice(&(count as u32).to_le_bytes());
    }

    /// Reads a context back from bytes; `None` if there are fewer than [`CTX_SIZE`].
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; CTX_SIZE] = b.get(..CTX_SIZE)?.try_into().ok()?;
        let u64_at = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[32..36]);
        let count = u32::from_le_bytes(w);
        w.copy_from_slice(&b[36..40]);
        let ret = i32::from_le_bytes(w);
        Some(Ctx {
            mailbox: u64_at(0),
            alloc_state: u64_at(8),
            globals: u64_at(16),
            globals_size: u64_at(24),
            count,
            ret,
        })
    }
}

/// Which program processes a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// Insert or replace (sketches: add 1).
    Update,
    /// Find and copy out the value (sketches: estimate the count).
    Lookup,
    /// Remove (sketches: subtract 1).
    Delete,
}

impl OpKind {
    /// Every kind, in the order the benchmark reports them.
    pub const ALL: [OpKind; 3] = [OpKind::Update, OpKind::Lookup, OpKind::Delete];

    /// Name of the program (and of the native entry point without its `ds_` prefix).
    pub const fn program(self) -> &'static str {
        match self {
            OpKind::Update => "update",
            OpKind::Lookup => "lookup",
            OpKind::Delete => "delete",
        }
    }
}

/// The order of keys in the ordered structures (`ds_key_cmp`): the four little-endian 8-byte
/// words compared as unsigned numbers, first word first.
pub fn key_order(a: &Key, b: &Key) -> Ordering {
    let words = |k: &Key| -> [u64; 4] {
        std::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&k[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        })
    };
    words(a).cmp(&words(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctx_bytes_round_trip_at_the_c_offsets() {
        let ctx = Ctx {
            mailbox: 0x1122_3344_5566_7788,
            alloc_state: 2,
            globals: 3,
            globals_size: 4,
            count: 1024,
            ret: -12,
        };
        let b = ctx.to_bytes();
        assert_eq!(b[0], 0x88);
        assert_eq!(&b[32..36], &1024u32.to_le_bytes());
        assert_eq!(&b[36..40], &(-12i32).to_le_bytes());
        assert_eq!(Ctx::from_bytes(&b), Some(ctx));
        assert_eq!(Ctx::from_bytes(&b[..39]), None);
        let mut b = b;
        Ctx::set_count(&mut b, 7);
        assert_eq!(Ctx::from_bytes(&b), Some(Ctx { count: 7, ..ctx }));
    }

    #[test]
    fn op_fields_sit_where_c_puts_them() {
        let op = Op::default();
        let base = &op as *const Op as usize;
        assert_eq!(&op.value as *const _ as usize - base, 32);
        assert_eq!(&op.result as *const _ as usize - base, 96);
    }

    #[test]
    fn key_order_compares_words_not_bytes() {
        let mut a = [0u8; KEY_SIZE];
        let mut b = [0u8; KEY_SIZE];
        a[0] = 2; // word 0 = 2
        b[1] = 1; // word 0 = 256
        assert_eq!(key_order(&a, &b), Ordering::Less);
        assert_eq!(a.cmp(&b), Ordering::Greater);
        b = a;
        assert_eq!(key_order(&a, &b), Ordering::Equal);
        b[31] = 1;
        assert_eq!(key_order(&a, &b), Ordering::Less);
    }
}
