//! Ring buffer helpers: reservations as regions and resources, submit/discard, release on exit.

mod common;

use common::*;
use kflex_runtime::RegionKind;
use kflex_runtime::helpers::{HelperError, ResourceKind, ids};
use kflex_runtime::maps::{BPF_RB_AVAIL_DATA, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS, BPF_RB_RING_SIZE};

#[test]
fn reserve_write_submit_consume() {
    let mut f = Fixture::new();
    let rb = f.handle(RINGBUF);
    let s1 = f.call(ids::RINGBUF_RESERVE, &[rb, 12, 0]).unwrap();
    assert_ne!(s1, 0);
    let r = f.mem.region_at(s1).unwrap();
    assert_eq!(
        (r.kind, r.len, r.writable),
        (RegionKind::RingbufSample, 12, true)
    );
    assert!(f.mem.store(s1 + 8, 4, 0x0403_0201).is_ok());
    assert!(
        f.mem.store(s1 + 12, 1, 0).is_err(),
        "sample is exactly 12 bytes"
    );
    f.mem.write_bytes(s1, b"sample-1").unwrap();
    assert_eq!(f.env.resources.held(), 1);

    let s2 = f.call(ids::RINGBUF_RESERVE, &[rb, 4, 0]).unwrap();
    f.mem.write_bytes(s2, b"drop").unwrap();
    assert_eq!(f.call(ids::RINGBUF_DISCARD, &[s2, 0]), Ok(0));
    assert_eq!(f.call(ids::RINGBUF_SUBMIT, &[s1, BPF_RB_NO_WAKEUP]), Ok(0));
    assert!(
        f.mem.region_at(s1).is_none(),
        "submitted sample no longer accessible"
    );
    assert!(f.mem.region_at(s2).is_none());
    assert_eq!(f.env.resources.held(), 0);
    assert_eq!(
        (f.env.resources.acquired(), f.env.resources.released()),
        (2, 2)
    );

    let data = f.put(0, b"out!");
    assert_eq!(f.call(ids::RINGBUF_OUTPUT, &[rb, data, 4, 0]), Ok(0));
    assert_eq!(
        f.call(ids::RINGBUF_OUTPUT, &[rb, data, 4, 8]),
        Ok(neg(libc::EINVAL))
    );
    // 12 -> 24 bytes, 4 -> 16, 4 -> 16.
    assert_eq!(f.call(ids::RINGBUF_QUERY, &[rb, BPF_RB_PROD_POS]), Ok(56));
    assert_eq!(f.call(ids::RINGBUF_QUERY, &[rb, BPF_RB_AVAIL_DATA]), Ok(56));
    assert_eq!(
        f.call(ids::RINGBUF_QUERY, &[rb, BPF_RB_RING_SIZE]),
        Ok(4096)
    );

    let mut want1 = b"sample-1".to_vec();
    want1.extend_from_slice(&[1, 2, 3, 4]);
    assert_eq!(
        f.table.ringbuf_consume(RINGBUF).unwrap(),
        vec![want1, b"out!".to_vec()]
    );
    assert_eq!(f.call(ids::RINGBUF_QUERY, &[rb, BPF_RB_AVAIL_DATA]), Ok(0));
}

#[test]
fn release_all_discards_held_samples() {
    let mut f = Fixture::new();
    let rb = f.handle(RINGBUF);
    let a = f.call(ids::RINGBUF_RESERVE, &[rb, 8, 0]).unwrap();
    let b = f.call(ids::RINGBUF_RESERVE, &[rb, 8, 0]).unwrap();
    f.mem.write_bytes(b, b"kept-one").unwrap();
    f.call(ids::RINGBUF_SUBMIT, &[b, 0]).unwrap();
    // `a` is still busy, so `b` cannot be consumed yet.
    assert!(f.table.ringbuf_consume(RINGBUF).unwrap().is_empty());
    let held = f.env.resources.iter().next().unwrap();
    assert_eq!(
        (held.kind, held.key, held.map),
        (ResourceKind::RingbufSample, a, Some(RINGBUF))
    );
    let mut mem = std::mem::take(&mut f.mem);
    assert_eq!(f.env.release_all_in(&mut mem), 1);
    assert!(mem.region_at(a).is_none());
    assert_eq!(f.env.release_all(), 0);
    assert_eq!(
        f.table.ringbuf_consume(RINGBUF).unwrap(),
        vec![b"kept-one".to_vec()]
    );
    f.mem = mem;
    // The released sample can no longer be submitted.
    assert!(matches!(
        f.call(ids::RINGBUF_SUBMIT, &[a, 0]),
        Err(HelperError::BadArgument { arg: 1, .. })
    ));
}

#[test]
fn bad_ringbuf_arguments() {
    let mut f = Fixture::new();
    let rb = f.handle(RINGBUF);
    let arr = f.handle(ARRAY);
    assert!(matches!(
        f.call(ids::RINGBUF_RESERVE, &[arr, 8, 0]),
        Err(HelperError::BadArgument { arg: 1, .. })
    ));
    assert!(matches!(
        f.call(ids::RINGBUF_QUERY, &[f.stack, 0]),
        Err(HelperError::BadArgument { arg: 1, .. })
    ));
    // Output from memory the program may not read.
    assert!(matches!(
        f.call(ids::RINGBUF_OUTPUT, &[rb, 0x1000, 8, 0]),
        Err(HelperError::Memory(_))
    ));
    // Submitting something that is not a reservation.
    let s = f.call(ids::RINGBUF_RESERVE, &[rb, 8, 0]).unwrap();
    assert!(matches!(
        f.call(ids::RINGBUF_SUBMIT, &[s + 8, 0]),
        Err(HelperError::BadArgument { .. })
    ));
    assert_eq!(f.call(ids::RINGBUF_SUBMIT, &[s, 0]), Ok(0));
    assert!(matches!(
        f.call(ids::RINGBUF_DISCARD, &[s, 0]),
        Err(HelperError::BadArgument { .. })
    ));
    // Reserve refusals return NULL.
    assert_eq!(
        f.call(ids::RINGBUF_RESERVE, &[rb, 8, 1]),
        Ok(0),
        "flags must be 0"
    );
    assert_eq!(
        f.call(ids::RINGBUF_RESERVE, &[rb, 4096, 0]),
        Ok(0),
        "larger than the ring"
    );
    assert_eq!(f.env.resources.held(), 0);
}

#[test]
fn full_ring_returns_null_and_recovers_after_consumption_with_wraparound() {
    let mut f = Fixture::new();
    let rb = f.handle(RINGBUF);
    let mut n = 0u8;
    loop {
        let s = f.call(ids::RINGBUF_RESERVE, &[rb, 1000, 0]).unwrap();
        if s == 0 {
            break;
        }
        f.mem.write_bytes(s, &[n; 1000]).unwrap();
        f.call(ids::RINGBUF_SUBMIT, &[s, 0]).unwrap();
        n += 1;
    }
    assert_eq!(n, 4);
    let data = f.put(0, &[0xee; 64]);
    assert_eq!(
        f.call(ids::RINGBUF_OUTPUT, &[rb, data, 64, 0]),
        Ok(neg(libc::EAGAIN))
    );
    assert_eq!(f.table.ringbuf_consume(RINGBUF).unwrap().len(), 4);
    // This one wraps around the end of the ring but is one contiguous region.
    let s = f.call(ids::RINGBUF_RESERVE, &[rb, 1000, 0]).unwrap();
    assert_ne!(s, 0);
    f.mem.write_bytes(s, &[0x5a; 1000]).unwrap();
    f.call(ids::RINGBUF_SUBMIT, &[s, 0]).unwrap();
    assert_eq!(
        f.table.ringbuf_consume(RINGBUF).unwrap(),
        vec![vec![0x5a; 1000]]
    );
}

#[test]
fn stale_sample_regions_do_not_block_new_reservations() {
    let mut f = Fixture::new();
    let rb = f.handle(RINGBUF);
    let s = f.call(ids::RINGBUF_RESERVE, &[rb, 16, 0]).unwrap();
    // An engine that releases without cleaning its memory map leaves the region behind.
    assert_eq!(f.env.release_all(), 1);
    assert!(f.mem.region_at(s).is_some());
    f.table.ringbuf_consume(RINGBUF).unwrap();
    // Advance the ring by exactly its size so the next sample lands on the stale region.
    assert!(
        f.table
            .ringbuf(RINGBUF)
            .unwrap()
            .output(&[0; 4064], 0)
            .is_ok()
    );
    assert_eq!(f.table.ringbuf_consume(RINGBUF).unwrap().len(), 1);
    let t = f.call(ids::RINGBUF_RESERVE, &[rb, 16, 0]).unwrap();
    assert_eq!(t, s, "same position one lap later");
    let r = f.mem.region_at(t).unwrap();
    assert_eq!((r.kind, r.len), (RegionKind::RingbufSample, 16));
    f.mem.write_bytes(t, &[3; 16]).unwrap();
    assert!(f.call(ids::RINGBUF_SUBMIT, &[t, 0]).is_ok());
    assert_eq!(f.table.ringbuf_consume(RINGBUF).unwrap(), vec![vec![3; 16]]);
}
