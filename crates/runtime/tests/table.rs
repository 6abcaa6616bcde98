//! MapTable creation, thread safety, and concurrent use.

mod common;

use std::sync::Arc;

use common::spec;
use kflex_object::MapType;
use kflex_runtime::maps::{MapError, MapOptions, MapTable};
use kflex_runtime::{ExecEnv, MapError as ReexportedError};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

#[test]
fn table_is_send_sync_and_env_is_send() {
    assert_send_sync::<MapTable>();
    assert_send::<ExecEnv>();
    let _: Option<ReexportedError> = None;
}

#[test]
fn creation_errors_name_the_map() {
    let opts = MapOptions::default();
    let cases = [
        spec("bad_rb", MapType::Ringbuf, 0, 0, 3 * 4096),
        spec("bad_hash", MapType::Hash, 0, 8, 4),
        spec("bad_arr", MapType::Array, 4, 8, 0),
        spec("bad_pcpu", MapType::PercpuArray, 8, 8, 1),
        spec("bad_lru", MapType::LruHash, 4, 0, 1),
        spec("bad_arena", MapType::Arena, 0, 0, 0),
    ];
    for s in cases {
        let name = s.name.clone();
        match MapTable::create(&[spec("ok", MapType::Array, 4, 4, 1), s], &opts) {
            Err(e @ MapError::Create { .. }) => {
                assert!(e.to_string().contains(&name), "{e}");
                assert_eq!(e.errno(), libc::EINVAL);
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    let mut g = spec(".data", MapType::Hash, 4, 4, 1);
    g.global = Some(kflex_object::GlobalKind::Data);
    assert!(MapTable::create(&[g], &opts).is_err());
}

#[test]
fn default_cpu_count_is_the_hosts() {
    let t = MapTable::create(
        &[spec("p", MapType::PercpuArray, 4, 8, 1)],
        &MapOptions::default(),
    )
    .unwrap();
    assert_eq!(t.cpus(), kflex_runtime::maps::online_cpus());
    assert_eq!(
        t.lookup_percpu(0, &0u32.to_le_bytes()).unwrap().len(),
        t.cpus() as usize
    );
    assert!(matches!(
        t.lookup_percpu(0, &1u32.to_le_bytes()),
        Err(MapError::NotFound)
    ));
}

#[test]
fn concurrent_hash_updates_and_ringbuf_outputs() {
    let specs = [
        spec("h", MapType::Hash, 4, 8, 1024),
        spec("rb", MapType::Ringbuf, 0, 0, 1 << 16),
    ];
    let t = Arc::new(MapTable::create(&specs, &MapOptions::default()).unwrap());
    let threads: Vec<_> = (0..4u32)
        .map(|n| {
            let t = t.clone();
            std::thread::spawn(move || {
                let rb = t.ringbuf(1).unwrap().clone();
                for i in 0..200u32 {
                    let k = n * 1000 + i;
                    t.update(0, &k.to_le_bytes(), &(k as u64).to_le_bytes(), 0)
                        .unwrap();
                    rb.output(&k.to_le_bytes(), 0).unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert_eq!(t.keys(0).unwrap().len(), 800);
    let k = 3017u32.to_le_bytes();
    assert_eq!(
        t.lookup(0, &k).unwrap(),
        Some(3017u64.to_le_bytes().to_vec())
    );
    let mut recs: Vec<u32> = t
        .ringbuf_consume(1)
        .unwrap()
        .iter()
        .map(|r| u32::from_le_bytes(r[..4].try_into().unwrap()))
        .collect();
    recs.sort();
    let mut want: Vec<u32> = (0..4)
        .flat_map(|n| (0..200).map(move |i| n * 1000 + i))
        .collect();
    want.sort();
    assert_eq!(recs, want);
}

/// `memory_map` copies hold exactly the table's regions, sorted, and are independent of each
/// other: a region added to one copy is not in the next.
#[test]
fn memory_map_copies_hold_the_table_regions() {
    let specs = [
        spec("arr", MapType::Array, 4, 24, 8),
        spec("hash", MapType::Hash, 8, 8, 16),
        spec("pcpu", MapType::PercpuArray, 4, 8, 2),
        spec("rb", MapType::Ringbuf, 0, 0, 4096),
    ];
    let table = MapTable::create(&specs, &MapOptions::default()).unwrap();
    let mut expected = table.regions();
    expected.sort_by_key(|r| r.start);
    assert_eq!(expected.len(), 3, "ring buffers have no region");
    // SAFETY: `table` outlives both copies; nothing reads through them.
    let mut first = unsafe { table.memory_map() }.unwrap();
    assert_eq!(first.regions(), expected.as_slice());
    let extra = [0u64; 2];
    let region = kflex_runtime::Region {
        start: extra.as_ptr() as u64,
        len: 16,
        kind: kflex_runtime::RegionKind::Input,
        writable: false,
        elements: None,
    };
    // SAFETY: `extra` outlives `first` and is not accessed through it.
    unsafe { first.insert(region) }.unwrap();
    assert_eq!(first.regions().len(), 4);
    // SAFETY: as above.
    let second = unsafe { table.memory_map() }.unwrap();
    assert_eq!(second.regions(), expected.as_slice());
}
