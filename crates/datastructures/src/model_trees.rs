//! Models and host-side checks for the ordered structures of `ds/rbtree.h` and `ds/skiplist.h`.
//!
//! Both order keys byte-lexicographically (four big-endian 64-bit words), so their model is a
//! plain `BTreeMap<Key, Value>` ([`TreeModel`]); op results do not depend on the order, but the
//! structures' shapes do.
//!
//! [`check_rbtree`] walks a red-black tree through the heap, from the host, and checks every
//! invariant: BST order, parent links, a black root, no red node with a red child, and the same
//! number of black nodes on every root-to-leaf path. [`check_skiplist`] checks a skip list's
//! levels. Both read memory through [`Memory`], so they work on any engine's heap (kflex's heap,
//! the Linux arena's user mapping, the native build's buffer: in all three, pointers stored in the
//! heap are addresses valid in this process, read with [`ProcessMemory`]) and are unit-tested on
//! fake memory.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::MapModel;
use crate::protocol::{KEY_SIZE, Key, Value};

/// The ordered-map model of the red-black tree and the skip list (byte order of the keys).
pub type TreeModel = MapModel<BTreeMap<Key, Value>>;

/// Read access to a heap, by address.
pub trait Memory {
    /// Fills `buf` from `addr`; an error when the range is not readable heap memory.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String>;

    /// Reads a little-endian u64.
    fn read_u64(&self, addr: u64) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// This process's memory, read with `process_vm_readv` so that a stray pointer in a corrupted
/// structure is reported as an error instead of crashing the checker.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessMemory;

impl Memory for ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        let local = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let remote = libc::iovec {
            iov_base: addr as usize as *mut libc::c_void,
            iov_len: buf.len(),
        };
        // SAFETY: `local` describes `buf`, which we hold mutably; the kernel validates `remote`
        // (an unmapped range fails with EFAULT) and reads nothing else.
        let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
        if n == buf.len() as isize {
            Ok(())
        } else {
            Err(format!(
                "cannot read {} bytes at {addr:#x}: {}",
                buf.len(),
                std::io::Error::last_os_error()
            ))
        }
    }
}

/// Offsets in `struct rb_node` (`ds/rbtree.h`).
pub mod rb_layout {
    /// The key (32 bytes).
    pub const KEY: u64 = 0;
    /// The value (64 bytes).
    pub const VALUE: u64 = 32;
    /// Left child.
    pub const LEFT: u64 = 96;
    /// Right child.
    pub const RIGHT: u64 = 104;
    /// Parent.
    pub const PARENT: u64 = 112;
    /// Colour: 1 red, 0 black.
    pub const RED: u64 = 120;
    /// Where `tree.root` sits relative to the mailbox (`ops[0]`) in `rbtree.bpf.c`'s globals.
    pub const ROOT_FROM_MAILBOX: i64 = 8 - 64;
}

/// What a valid red-black tree looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbShape {
    /// Keys in in-order order.
    pub keys: Vec<Key>,
    /// Black nodes on every root-to-leaf path (NULL leaves not counted).
    pub black_height: usize,
    /// Longest root-to-leaf path in nodes.
    pub height: usize,
}

/// A broken red-black tree invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RbViolation {
    /// The node's address (0 for the tree as a whole).
    pub node: u64,
    /// What is wrong.
    pub what: String,
}

impl fmt::Display for RbViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {:#x}: {}", self.node, self.what)
    }
}

impl std::error::Error for RbViolation {}

/// Where a node stands in the walk.
struct Frame {
    node: u64,
    parent: u64,
    /// Black nodes above this one.
    blacks_above: usize,
    depth: usize,
    /// Children done: 0 none, 1 left, 2 both.
    stage: u8,
}

/// Reads a node's key.
fn read_key(mem: &dyn Memory, node: u64) -> Result<Key, String> {
    let mut k = [0u8; KEY_SIZE];
    mem.read(node + rb_layout::KEY, &mut k)?;
    Ok(k)
}

/// Checks the red-black tree whose root pointer is `root` (0 when empty). Visits at most
/// `max_nodes` nodes (a cycle or a runaway tree is a violation).
pub fn check_rbtree(mem: &dyn Memory, root: u64, max_nodes: usize) -> Result<RbShape, RbViolation> {
    walk_rbtree(mem, root, max_nodes, true)
}

/// Checks only the binary-search-tree part of [`check_rbtree`] (order, parent links, colour words
/// 0 or 1), not the colour rules: what must hold after a rebalance was cancelled half-way.
/// `black_height` is then not meaningful.
pub fn check_bst(mem: &dyn Memory, root: u64, max_nodes: usize) -> Result<RbShape, RbViolation> {
    walk_rbtree(mem, root, max_nodes, false)
}

fn walk_rbtree(
    mem: &dyn Memory,
    root: u64,
    max_nodes: usize,
    colours: bool,
) -> Result<RbShape, RbViolation> {
    let err = |node: u64, what: String| RbViolation { node, what };
    let mut shape = RbShape {
        keys: Vec::new(),
        black_height: 0,
        height: 0,
    };
    if root == 0 {
        return Ok(shape);
    }
    let rd = |addr: u64, node: u64| mem.read_u64(addr).map_err(|e| err(node, e));
    if colours && rd(root + rb_layout::RED, root)? != 0 {
        return Err(err(root, "the root is red".into()));
    }
    let mut leaf_blacks: Option<usize> = None;
    let mut visited = 0usize;
    let mut stack = vec![Frame {
        node: root,
        parent: 0,
        blacks_above: 0,
        depth: 1,
        stage: 0,
    }];
    while let Some(top) = stack.last_mut() {
        let node = top.node;
        let red = rd(node + rb_layout::RED, node)?;
        if red > 1 {
            return Err(err(node, format!("colour word {red} is neither 0 nor 1")));
        }
        let blacks = top.blacks_above + usize::from(red == 0);
        let child_at = match top.stage {
            0 => {
                visited += 1;
                if visited > max_nodes {
                    return Err(err(node, format!("more than {max_nodes} nodes (a cycle?)")));
                }
                let parent = rd(node + rb_layout::PARENT, node)?;
                if parent != top.parent {
                    return Err(err(
                        node,
                        format!("parent link {parent:#x}, expected {:#x}", top.parent),
                    ));
                }
                shape.height = shape.height.max(top.depth);
                rb_layout::LEFT
            }
            1 => {
                // In-order position: after the left subtree.
                let key = read_key(mem, node).map_err(|e| err(node, e))?;
                if let Some(prev) = shape.keys.last()
                    && prev >= &key
                {
                    return Err(err(node, "keys out of order".into()));
                }
                shape.keys.push(key);
                rb_layout::RIGHT
            }
            _ => {
                stack.pop();
                continue;
            }
        };
        top.stage += 1;
        let depth = top.depth;
        let child = rd(node + child_at, node)?;
        if child == 0 {
            if !colours {
                continue;
            }
            match leaf_blacks {
                None => leaf_blacks = Some(blacks),
                Some(b) if b != blacks => {
                    return Err(err(
                        node,
                        format!("{blacks} black nodes on a path, {b} on another"),
                    ));
                }
                Some(_) => {}
            }
            continue;
        }
        if colours && red == 1 && rd(child + rb_layout::RED, child)? == 1 {
            return Err(err(child, "red node with a red parent".into()));
        }
        stack.push(Frame {
            node: child,
            parent: node,
            blacks_above: blacks,
            depth: depth + 1,
            stage: 0,
        });
    }
    shape.black_height = leaf_blacks.unwrap_or(0);
    Ok(shape)
}

/// Offsets in `struct sl_node` / `struct sl_list` (`ds/skiplist.h`).
pub mod sl_layout {
    /// The key (32 bytes).
    pub const KEY: u64 = 0;
    /// The node's level.
    pub const LEVEL: u64 = 96;
    /// `next[0]`.
    pub const NEXT: u64 = 104;
    /// Most levels a node has (`SL_MAX_LEVEL`).
    pub const MAX_LEVEL: u64 = 16;
    /// Where `list.head.next` sits relative to the mailbox in `skiplist.bpf.c`'s globals.
    pub const HEAD_NEXT_FROM_MAILBOX: i64 = 264 - 392;
    /// Where `list.levels` sits relative to the mailbox in `skiplist.bpf.c`'s globals.
    pub const LEVELS_FROM_MAILBOX: i64 = 16 - 392;
}

/// Checks a skip list given the address of its head's `next` array and the list's level count:
/// level 0 is strictly ordered, every node's level is in 1..=MAX_LEVEL, and each upper level is
/// an ordered subsequence of the level below made of nodes tall enough for it. Returns the keys
/// in order. Visits at most `max_nodes` nodes per level.
pub fn check_skiplist(
    mem: &dyn Memory,
    head_next: u64,
    levels: u64,
    max_nodes: usize,
) -> Result<Vec<Key>, String> {
    if levels > sl_layout::MAX_LEVEL {
        return Err(format!(
            "{levels} levels in use, at most {}",
            sl_layout::MAX_LEVEL
        ));
    }
    let mut below: Option<Vec<u64>> = None;
    let mut keys = Vec::new();
    for level in 0..levels.max(1) {
        let mut nodes = Vec::new();
        let mut n = mem.read_u64(head_next + 8 * level)?;
        while n != 0 {
            if nodes.len() >= max_nodes {
                return Err(format!("level {level}: more than {max_nodes} nodes"));
            }
            let height = mem.read_u64(n + sl_layout::LEVEL)?;
            if height <= level || height > sl_layout::MAX_LEVEL {
                return Err(format!("level {level}: node {n:#x} has level {height}"));
            }
            nodes.push(n);
            n = mem.read_u64(n + sl_layout::NEXT + 8 * level)?;
        }
        match &below {
            None => {
                for &n in &nodes {
                    let key = read_key(mem, n)?;
                    if keys.last().is_some_and(|p: &Key| p >= &key) {
                        return Err(format!("level 0: keys out of order at {n:#x}"));
                    }
                    keys.push(key);
                }
            }
            Some(lower) => {
                // An ordered subsequence of the level below.
                let mut it = lower.iter();
                for &n in &nodes {
                    if !it.any(|&m| m == n) {
                        return Err(format!("level {level}: node {n:#x} out of order"));
                    }
                }
            }
        }
        below = Some(nodes);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake heap: a byte buffer at address BASE.
    struct Fake(Vec<u8>);

    const BASE: u64 = 0x10_000;

    impl Memory for Fake {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
            let at = addr.checked_sub(BASE).ok_or("below")? as usize;
            let src = self.0.get(at..at + buf.len()).ok_or("above")?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    impl Fake {
        fn put(&mut self, addr: u64, v: u64) {
            let at = (addr - BASE) as usize;
            self.0[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        /// Node i at BASE + 128 * i with key byte 0 = key.
        fn node(&mut self, i: u64, key: u8, red: u64, parent: u64, left: u64, right: u64) -> u64 {
            let n = BASE + 128 * i;
            self.0[(n - BASE) as usize] = key;
            self.put(n + rb_layout::RED, red);
            self.put(n + rb_layout::PARENT, parent);
            self.put(n + rb_layout::LEFT, left);
            self.put(n + rb_layout::RIGHT, right);
            n
        }
    }

    fn addr(i: u64) -> u64 {
        BASE + 128 * i
    }

    /// 2 (black) with children 1 and 3 (red).
    fn three() -> Fake {
        let mut m = Fake(vec![0; 128 * 8]);
        m.node(0, 2, 0, 0, addr(1), addr(2));
        m.node(1, 1, 1, addr(0), 0, 0);
        m.node(2, 3, 1, addr(0), 0, 0);
        m
    }

    #[test]
    fn a_valid_tree_is_walked_in_order() {
        let shape = check_rbtree(&three(), addr(0), 100).unwrap();
        let firsts: Vec<u8> = shape.keys.iter().map(|k| k[0]).collect();
        assert_eq!(firsts, [1, 2, 3]);
        assert_eq!((shape.black_height, shape.height), (1, 2));
        assert_eq!(check_rbtree(&three(), 0, 100).unwrap().keys.len(), 0);
    }

    #[test]
    fn each_broken_invariant_is_reported() {
        type Breaker = fn(&mut Fake);
        let cases: [(&str, Breaker); 6] = [
            ("red root", |m| m.put(addr(0) + rb_layout::RED, 1)),
            ("order", |m| m.0[128] = 9),
            ("parent", |m| m.put(addr(2) + rb_layout::PARENT, addr(1))),
            ("black height", |m| m.put(addr(1) + rb_layout::RED, 0)),
            ("red-red", |m| {
                m.node(3, 4, 1, addr(2), 0, 0);
                m.put(addr(2) + rb_layout::RIGHT, addr(3));
            }),
            ("cycle", |m| m.put(addr(2) + rb_layout::RIGHT, addr(0))),
        ];
        for (i, (name, break_it)) in cases.into_iter().enumerate() {
            let mut m = three();
            break_it(&mut m);
            assert!(check_rbtree(&m, addr(0), 100).is_err(), "{name}");
            // The first, fourth and fifth break only colour rules: still a valid BST.
            let colour_only = matches!(i, 0 | 3 | 4);
            assert_eq!(check_bst(&m, addr(0), 100).is_ok(), colour_only, "{name}");
        }
    }

    #[test]
    fn skiplist_levels_must_be_ordered_subsequences() {
        // Head next array at BASE; nodes at BASE + 256 * i (level at 96, next at 104).
        let mut m = Fake(vec![0; 256 * 4]);
        let node = |i: u64| BASE + 256 * i;
        for (i, key, level) in [(1u64, 1u8, 2u64), (2, 2, 1), (3, 3, 2)] {
            m.0[(node(i) - BASE) as usize] = key;
            m.put(node(i) + sl_layout::LEVEL, level);
        }
        m.put(BASE, node(1));
        m.put(node(1) + sl_layout::NEXT, node(2));
        m.put(node(2) + sl_layout::NEXT, node(3));
        m.put(BASE + 8, node(1));
        m.put(node(1) + sl_layout::NEXT + 8, node(3));
        let keys = check_skiplist(&m, BASE, 2, 10).unwrap();
        assert_eq!(keys.iter().map(|k| k[0]).collect::<Vec<_>>(), [1, 2, 3]);
        // Level 1 skipping backwards is caught, and so is a node too short for its level.
        m.put(BASE + 8, node(3));
        m.put(node(3) + sl_layout::NEXT + 8, node(1));
        m.put(node(1) + sl_layout::NEXT + 8, 0);
        assert!(check_skiplist(&m, BASE, 2, 10).is_err());
        m.put(BASE + 8, node(2));
        m.put(node(2) + sl_layout::NEXT + 8, 0);
        assert!(check_skiplist(&m, BASE, 2, 10).is_err());
    }

    #[test]
    fn process_memory_reads_what_is_there_and_refuses_unmapped_addresses() {
        let words = [0x1122_3344_5566_7788u64, 42];
        let at = words.as_ptr() as u64;
        assert_eq!(ProcessMemory.read_u64(at).unwrap(), words[0]);
        assert_eq!(ProcessMemory.read_u64(at + 8).unwrap(), 42);
        assert!(ProcessMemory.read_u64(8).is_err());
    }

    #[test]
    fn the_model_is_a_byte_ordered_map() {
        use crate::model::Model;
        use crate::protocol::{ABSENT, INSERTED, REMOVED, REPLACED};

        let mut m = TreeModel::default();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        a[0] = 2;
        b[1] = 1;
        assert_eq!(m.update(&a, &[1; 64]), INSERTED);
        assert_eq!(m.update(&b, &[2; 64]), INSERTED);
        assert_eq!(m.update(&b, &[3; 64]), REPLACED);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [b, a]);
        assert_eq!(m.lookup(&b), Some([3; 64]));
        assert_eq!(m.delete(&a), REMOVED);
        assert_eq!(m.delete(&a), ABSENT);
    }
}
