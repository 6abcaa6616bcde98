//! Spin lock helpers: lock words in map values and the heap, errors instead of self-deadlock,
//! release of held locks by the resource tracker, mutual exclusion between threads.

mod common;

use std::sync::Arc;
use std::thread;

use common::*;
use kflex_runtime::helpers::{
    ArgKind, HelperDef, HelperError, ResourceKind, RetKind, Signature, ids,
};
use kflex_runtime::maps::MapTable;
use kflex_runtime::{ExecEnv, HelperCall, HelperRegistry, MemoryMap};

/// Address of element `key` of the array map (values are 8 bytes: lock word + 4 spare bytes).
fn array_value(f: &mut Fixture, key: u32) -> u64 {
    let k = f.put(0, &key.to_le_bytes());
    let arr = f.handle(ARRAY);
    let v = f.call(ids::MAP_LOOKUP_ELEM, &[arr, k]).unwrap();
    assert_ne!(v, 0);
    v
}

fn word(f: &Fixture, addr: u64) -> u64 {
    f.mem.load(addr, 4).unwrap()
}

#[test]
fn lock_then_unlock_sets_and_clears_the_word() {
    let mut f = Fixture::new();
    let v = array_value(&mut f, 1);
    assert_eq!(f.call(ids::SPIN_LOCK, &[v]), Ok(0));
    assert_eq!(word(&f, v), 1);
    let held = f.env.resources.iter().next().unwrap();
    assert_eq!(
        (held.kind, held.key, held.map),
        (ResourceKind::Lock, v, Some(ARRAY))
    );
    assert_eq!(f.call(ids::SPIN_UNLOCK, &[v]), Ok(0));
    assert_eq!(word(&f, v), 0);
    assert_eq!(f.env.resources.held(), 0);
    // The lock can be taken again after being released.
    assert_eq!(f.call(ids::SPIN_LOCK, &[v]), Ok(0));
    assert_eq!(f.call(ids::SPIN_UNLOCK, &[v]), Ok(0));
}

#[test]
fn relocking_a_held_lock_is_an_error_not_a_hang() {
    let mut f = Fixture::new();
    let v = array_value(&mut f, 0);
    f.call(ids::SPIN_LOCK, &[v]).unwrap();
    let err = f.call(ids::SPIN_LOCK, &[v]).unwrap_err();
    assert!(
        matches!(&err, HelperError::BadArgument { arg: 1, reason } if reason.contains("already held")),
        "{err}"
    );
    assert_eq!(f.env.resources.held(), 1);
}

#[test]
fn unlocking_a_lock_not_held_is_an_error() {
    let mut f = Fixture::new();
    let v = array_value(&mut f, 2);
    let err = f.call(ids::SPIN_UNLOCK, &[v]).unwrap_err();
    assert!(err.to_string().contains("not held"), "{err}");
    // A word set by someone else (e.g. the host) is not ours to unlock either.
    f.mem.store(v, 4, 1).unwrap();
    assert!(f.call(ids::SPIN_UNLOCK, &[v]).is_err());
    assert_eq!(word(&f, v), 1, "foreign lock left alone");
}

#[test]
fn lock_words_must_be_aligned_writable_map_or_heap_memory() {
    let mut f = Fixture::new();
    let on_stack = f.put(8, &[0; 4]);
    let err = f.call(ids::SPIN_LOCK, &[on_stack]).unwrap_err();
    assert!(err.to_string().contains("stack frame 0"), "{err}");

    let v = array_value(&mut f, 3);
    let err = f.call(ids::SPIN_LOCK, &[v + 2]).unwrap_err();
    assert!(err.to_string().contains("aligned"), "{err}");
    // The last 4 bytes of an 8-byte value are fine; 6 would run past the element.
    assert_eq!(f.call(ids::SPIN_LOCK, &[v + 4]), Ok(0));
    assert!(matches!(
        f.call(ids::SPIN_LOCK, &[v + 8 + 4096 * 1024]),
        Err(HelperError::Memory(_))
    ));

    let rodata = f.table.value_address(RODATA, 0).unwrap();
    assert!(matches!(
        f.call(ids::SPIN_LOCK, &[rodata]),
        Err(HelperError::Memory(_))
    ));
    assert!(f.call(ids::SPIN_LOCK, &[0]).is_err(), "NULL");
    assert_eq!(f.env.resources.held(), 1);
}

#[test]
fn heap_locks_work_and_release_all_unlocks_everything_held() {
    let mut f = Fixture::new();
    let (heap, _) = f.table.heap(ARENA).unwrap();
    let lock_a = heap + 64;
    let lock_b = array_value(&mut f, 0);
    f.call(ids::SPIN_LOCK, &[lock_a]).unwrap();
    f.call(ids::SPIN_LOCK, &[lock_b]).unwrap();
    assert_eq!((word(&f, lock_a), word(&f, lock_b)), (1, 1));
    assert_eq!(f.env.release_all(), 2);
    assert_eq!((word(&f, lock_a), word(&f, lock_b)), (0, 0));
    assert!(
        f.call(ids::SPIN_UNLOCK, &[lock_a]).is_err(),
        "no longer held"
    );
}

/// One thread's view of the shared maps: its own memory map and environment.
fn thread_env(table: &Arc<MapTable>) -> (MemoryMap, ExecEnv) {
    let mut mem = MemoryMap::new();
    for r in table.regions() {
        // SAFETY: map memory is owned by the table, which outlives this memory map.
        unsafe { mem.insert(r) }.unwrap();
    }
    (mem, ExecEnv::with_maps(table.clone()))
}

#[test]
fn locks_exclude_other_threads() {
    let f = Fixture::new();
    let table = f.table.clone();
    // Element 0 of the array starts its value slab.
    let value = table
        .regions()
        .into_iter()
        .find(|r| r.kind == kflex_runtime::RegionKind::MapValue(ARRAY as u32))
        .unwrap()
        .start;
    let registry = Arc::new(HelperRegistry::linux_default());
    const THREADS: usize = 4;
    const ROUNDS: u64 = 2000;
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let table = table.clone();
            let registry = registry.clone();
            thread::spawn(move || {
                let (mut mem, mut env) = thread_env(&table);
                let lock = registry.get(ids::SPIN_LOCK).unwrap().func.clone();
                let unlock = registry.get(ids::SPIN_UNLOCK).unwrap().func.clone();
                for _ in 0..ROUNDS {
                    let args = [value, 0, 0, 0, 0];
                    let mut call = HelperCall {
                        args,
                        mem: &mut mem,
                        env: &mut env,
                    };
                    lock(&mut call).unwrap();
                    // Non-atomic read-modify-write of the counter next to the lock word.
                    let n = call.mem.load(value + 4, 4).unwrap();
                    thread::yield_now();
                    call.mem.store(value + 4, 4, n + 1).unwrap();
                    unlock(&mut call).unwrap();
                }
                assert_eq!(env.resources.held(), 0);
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let (mem, _) = thread_env(&table);
    assert_eq!(mem.load(value + 4, 4).unwrap(), THREADS as u64 * ROUNDS);
    assert_eq!(mem.load(value, 4).unwrap(), 0);
}

#[test]
fn signatures_and_release_helpers() {
    let reg = HelperRegistry::linux_default();
    for id in [ids::SPIN_LOCK, ids::SPIN_UNLOCK] {
        let d = reg.get(id).unwrap();
        assert_eq!(d.sig.args, vec![ArgKind::SpinLock]);
        assert_eq!(d.sig.ret, RetKind::Void);
        assert!(d.sig.allowed_under_lock, "{}", d.name);
    }
    assert_eq!(reg.get(ids::SPIN_LOCK).unwrap().name, "bpf_spin_lock");
    assert_eq!(
        reg.release_helper(ResourceKind::Lock),
        Some(ids::SPIN_UNLOCK)
    );
    assert_eq!(
        reg.release_helper(ResourceKind::RingbufSample),
        Some(ids::RINGBUF_DISCARD)
    );
    assert_eq!(reg.release_helper(ResourceKind::Host("socket")), None);

    let mut host = reg.clone();
    let sock = ResourceKind::Host("socket");
    let noop = |_: &mut HelperCall<'_>| -> Result<u64, HelperError> { Ok(0) };
    host.register(HelperDef {
        id: 1001,
        name: "host_sock_get".into(),
        sig: Signature::new(&[ArgKind::Scalar], RetKind::Scalar).acquires(sock),
        func: Arc::new(noop),
    })
    .unwrap();
    host.register(HelperDef {
        id: 1002,
        name: "host_sock_put".into(),
        sig: Signature::new(&[ArgKind::Ref(sock)], RetKind::Void).releases(0),
        func: Arc::new(noop),
    })
    .unwrap();
    assert_eq!(host.release_helper(sock), Some(1002));
    assert_eq!(host.release_helper(ResourceKind::Host("file")), None);
    // Without the built-in unlock helper, nothing releases locks.
    assert_eq!(
        HelperRegistry::empty().release_helper(ResourceKind::Lock),
        None
    );
}
