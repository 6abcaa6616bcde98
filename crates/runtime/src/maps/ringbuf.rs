//! `BPF_MAP_TYPE_RINGBUF`: a multi-producer, single-consumer ring of variable-length records in the
//! Linux layout.
//!
//! Each record starts with an 8-byte header (`u32` length with the busy and discard bits, `u32`
//! page offset) and is padded to 8 bytes. Producers reserve space in order; a record becomes visible
//! to the consumer when it is submitted, and its space is reused only after the consumer passes it.
//! The data area is mapped twice back to back, so a record that wraps around the end of the ring is
//! still one contiguous range of memory.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use kflex_object::MapSpec;

use super::raw::Mapping;
use super::{
    BPF_RB_AVAIL_DATA, BPF_RB_CONS_POS, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_PROD_POS,
    BPF_RB_RING_SIZE, MapError, round_up8,
};

/// Record header length bit: the record is reserved but not yet submitted or discarded.
pub const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
/// Record header length bit: the record was discarded.
pub const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
/// Size of a record header.
pub const BPF_RINGBUF_HDR_SZ: u64 = 8;
/// Largest record a program may reserve (Linux `RINGBUF_MAX_RECORD_SZ`).
const MAX_RECORD_SZ: u64 = (u32::MAX / 4) as u64;

/// A ring buffer map.
pub struct RingBuf {
    mask: u64,
    page_shift: u32,
    data: Mapping,
    consumer_pos: AtomicU64,
    producer_pos: AtomicU64,
    /// Serialises producers (Linux takes a spin lock in reserve).
    producer: Mutex<()>,
    /// Serialises consumers.
    consumer: Mutex<()>,
}

impl std::fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuf")
            .field("size", &self.size())
            .field("consumer_pos", &self.consumer_pos.load(Ordering::Relaxed))
            .field("producer_pos", &self.producer_pos.load(Ordering::Relaxed))
            .finish()
    }
}

impl RingBuf {
    /// Creates a ring of `spec.max_entries` bytes, which must be a power of two and a multiple of
    /// `page_size`; key and value sizes must be 0.
    pub(crate) fn new(spec: &MapSpec, page_size: u64) -> Result<Self, MapError> {
        let bad = |reason: String| MapError::Create {
            name: spec.name.clone(),
            reason,
        };
        if spec.key_size != 0 || spec.value_size != 0 {
            return Err(bad("ringbuf key and value sizes must be 0".into()));
        }
        let size = spec.max_entries as u64;
        if !size.is_power_of_two() || !size.is_multiple_of(page_size) {
            return Err(bad(format!(
                "size {size} is not a power of two multiple of the page size {page_size}"
            )));
        }
        let data = Mapping::double(size).map_err(|reason| MapError::NoMemory {
            name: spec.name.clone(),
            reason,
        })?;
        Ok(RingBuf {
            mask: size - 1,
            page_shift: page_size.trailing_zeros(),
            data,
            consumer_pos: AtomicU64::new(0),
            producer_pos: AtomicU64::new(0),
            producer: Mutex::new(()),
            consumer: Mutex::new(()),
        })
    }

    /// Size of the ring in bytes.
    pub fn size(&self) -> u64 {
        self.mask + 1
    }

    /// Start of the (doubly mapped) data area.
    pub fn data_start(&self) -> u64 {
        self.data.addr()
    }

    fn header(&self, pos: u64) -> &AtomicU32 {
        let addr = self.data.addr() + (pos & self.mask);
        // SAFETY: `pos & mask` is 8-aligned and inside the first copy of the data area, mapped for
        // the ring's lifetime. Header words lie outside every sample region handed to programs and
        // the host accesses them only atomically.
        unsafe { AtomicU32::from_ptr(addr as *mut u32) }
    }

    /// Reserves `size` bytes; returns the sample address, or `None` if there is no room, the size
    /// is too large or `flags` is non-zero (Linux returns NULL in all these cases).
    pub fn reserve(&self, size: u64, flags: u64) -> Option<u64> {
        if flags != 0 || size > MAX_RECORD_SZ {
            return None;
        }
        let len = round_up8(size + BPF_RINGBUF_HDR_SZ);
        if len > self.size() {
            return None;
        }
        let _guard = self.producer.lock().unwrap_or_else(|e| e.into_inner());
        let cons = self.consumer_pos.load(Ordering::Acquire);
        let prod = self.producer_pos.load(Ordering::Relaxed);
        let new_prod = prod + len;
        if new_prod - cons > self.mask {
            return None;
        }
        let hdr_off = prod & self.mask;
        let pg_off = (hdr_off >> self.page_shift) as u32;
        // SAFETY: the header's second word is inside the first data copy (hdr_off + 8 <= size).
        unsafe { AtomicU32::from_ptr((self.data.addr() + hdr_off + 4) as *mut u32) }
            .store(pg_off, Ordering::Relaxed);
        self.header(prod)
            .store(size as u32 | BPF_RINGBUF_BUSY_BIT, Ordering::Relaxed);
        self.producer_pos.store(new_prod, Ordering::Release);
        Some(self.data.addr() + hdr_off + BPF_RINGBUF_HDR_SZ)
    }

    /// Submits (or discards) the sample at `sample`; false if it is not a busy sample of this ring.
    pub fn commit(&self, sample: u64, discard: bool) -> bool {
        let Some(hdr_off) = sample
            .checked_sub(self.data.addr() + BPF_RINGBUF_HDR_SZ)
            .filter(|&o| o <= self.mask && o % 8 == 0)
        else {
            return false;
        };
        let hdr = self.header(hdr_off);
        let len = hdr.load(Ordering::Relaxed);
        if len & BPF_RINGBUF_BUSY_BIT == 0 {
            return false;
        }
        let mut new_len = len & !BPF_RINGBUF_BUSY_BIT;
        if discard {
            new_len |= BPF_RINGBUF_DISCARD_BIT;
        }
        hdr.store(new_len, Ordering::Release);
        true
    }

    /// `bpf_ringbuf_output`: copies `data` into a new record; `-EINVAL` for bad flags, `-EAGAIN`
    /// when there is no room.
    pub fn output(&self, data: &[u8], flags: u64) -> Result<(), i32> {
        // SAFETY: `data` is a live slice of `data.len()` readable bytes.
        unsafe { self.output_raw(data.as_ptr(), data.len() as u64, flags) }
    }

    /// [`RingBuf::output`] of the `len` bytes at `src`, copied straight into the new record (no
    /// intermediate buffer).
    ///
    /// # Safety
    /// `src..src + len` must be readable memory for the duration of the call.
    pub unsafe fn output_raw(&self, src: *const u8, len: u64, flags: u64) -> Result<(), i32> {
        if flags & !(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP) != 0 {
            return Err(libc::EINVAL);
        }
        let sample = self.reserve(len, 0).ok_or(libc::EAGAIN)?;
        // SAFETY: `src` is readable for `len` bytes (the caller's contract); `sample` was just
        // reserved with room for `len` bytes inside the ring's double data mapping, which the
        // ring owns and hands to nobody else until the record is committed below.
        unsafe { std::ptr::copy_nonoverlapping(src, sample as *mut u8, len as usize) };
        self.commit(sample, false);
        Ok(())
    }

    /// `bpf_ringbuf_query`: 0 for unknown flags, as Linux.
    pub fn query(&self, flags: u64) -> u64 {
        let cons = self.consumer_pos.load(Ordering::Acquire);
        let prod = self.producer_pos.load(Ordering::Acquire);
        match flags {
            BPF_RB_AVAIL_DATA => prod - cons,
            BPF_RB_RING_SIZE => self.size(),
            BPF_RB_CONS_POS => cons,
            BPF_RB_PROD_POS => prod,
            _ => 0,
        }
    }

    /// Consumes every submitted record up to the first still-busy one, in order, skipping discarded
    /// records, and frees their space.
    pub fn consume(&self) -> Vec<Vec<u8>> {
        let _guard = self.consumer.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut cons = self.consumer_pos.load(Ordering::Relaxed);
        loop {
            let prod = self.producer_pos.load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let len = self.header(cons).load(Ordering::Acquire);
            if len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let body = (len & !BPF_RINGBUF_DISCARD_BIT) as u64;
            if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                let off = (cons & self.mask) + BPF_RINGBUF_HDR_SZ;
                if let Some(rec) = self.data.read(off, body as usize) {
                    out.push(rec);
                }
            }
            cons += round_up8(body + BPF_RINGBUF_HDR_SZ);
            self.consumer_pos.store(cons, Ordering::Release);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_object::MapType;

    fn ring(size: u32) -> RingBuf {
        RingBuf::new(&MapSpec::new("rb", MapType::Ringbuf, 0, 0, size), 4096).unwrap()
    }

    fn fill(rb: &RingBuf, sample: u64, bytes: &[u8]) {
        assert!(rb.data.write(sample - rb.data_start(), bytes));
    }

    #[test]
    fn records_in_order_discard_skipped() {
        let rb = ring(4096);
        let a = rb.reserve(3, 0).unwrap();
        let b = rb.reserve(9, 0).unwrap();
        assert_eq!(
            b - a,
            16,
            "3-byte record takes 8 header + 8 padded body bytes"
        );
        fill(&rb, a, b"abc");
        fill(&rb, b, b"123456789");
        // b submitted first, but a is still busy: nothing can be consumed yet.
        assert!(rb.commit(b, false));
        assert!(rb.consume().is_empty());
        assert!(rb.commit(a, true));
        assert!(!rb.commit(a, false), "double commit refused");
        assert_eq!(rb.consume(), vec![b"123456789".to_vec()]);
        assert_eq!(rb.query(BPF_RB_CONS_POS), 16 + 24);
        assert_eq!(rb.query(BPF_RB_AVAIL_DATA), 0);
        assert_eq!(rb.query(BPF_RB_RING_SIZE), 4096);
        assert_eq!(rb.query(99), 0);
    }

    #[test]
    fn full_ring_refuses_until_consumed_and_wraps() {
        let rb = ring(4096);
        // 1000-byte records take 1008 bytes: four fit (4032), a fifth does not.
        let mut samples = Vec::new();
        for i in 0..4u8 {
            let s = rb.reserve(1000, 0).unwrap();
            fill(&rb, s, &[i; 1000]);
            samples.push(s);
        }
        assert_eq!(rb.reserve(1000, 0), None);
        assert_eq!(rb.output(&[0; 1000], 0), Err(libc::EAGAIN));
        for (i, s) in samples.iter().enumerate() {
            rb.commit(*s, i == 1);
        }
        let got = rb.consume();
        assert_eq!(got, vec![vec![0u8; 1000], vec![2; 1000], vec![3; 1000]]);
        // The next record starts at 4032 and wraps past the end of the ring.
        rb.output(&[7u8; 1000], BPF_RB_FORCE_WAKEUP).unwrap();
        rb.output(b"tail", BPF_RB_NO_WAKEUP).unwrap();
        assert_eq!(rb.query(BPF_RB_PROD_POS), 4032 + 1008 + 16);
        assert_eq!(rb.consume(), vec![vec![7u8; 1000], b"tail".to_vec()]);
        assert_eq!(rb.output(b"x", 4), Err(libc::EINVAL));
    }

    #[test]
    fn reserve_limits() {
        let rb = ring(4096);
        assert_eq!(rb.reserve(8, 1), None, "flags must be 0");
        assert_eq!(rb.reserve(4096, 0), None);
        assert_eq!(rb.reserve(u64::MAX, 0), None);
        assert!(rb.reserve(4080, 0).is_some(), "4088 bytes <= size - 1");
        assert!(!rb.commit(rb.data_start() + 3, false));
    }

    #[test]
    fn sizes_must_be_power_of_two_pages() {
        let mk = |n| RingBuf::new(&MapSpec::new("rb", MapType::Ringbuf, 0, 0, n), 4096);
        assert!(mk(4096 * 3).is_err());
        assert!(mk(2048).is_err());
        assert!(mk(0).is_err());
        assert!(mk(8192).is_ok());
    }
}
