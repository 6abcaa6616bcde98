//! Per-run state shared by the context hook, the prog-type helpers and the test-run code.
//!
//! A run's packet bounds can move while the program runs (`bpf_xdp_adjust_head`/`_meta`), so the
//! context hook (which materialises `data`/`data_end` on load) and the helpers must see one state.
//! It lives in an `Rc<RefCell<RunState>>`; helpers, which only receive the context pointer, find it
//! through a per-thread table of installed runs keyed by that pointer.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use kflex_object::ProgType;
use kflex_runtime::{AccessError, MemoryMap, Region, RegionKind};

use crate::buf::RawBuf;

/// Whether the program may access packet bytes directly (through `data`/`data_end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direct {
    /// No packet region is installed; only helpers reach the bytes (`socket_filter`).
    No,
    /// Packet (and metadata) regions are installed and writable.
    ReadWrite,
}

/// `(start, len)` of the regions currently installed for the packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Installed {
    packet: Option<(u64, u64)>,
    meta: Option<(u64, u64)>,
}

/// The packet buffer and where data, data_end and data_meta currently are (offsets into it).
#[derive(Debug)]
pub(crate) struct Packet {
    /// The whole buffer, headroom and tailroom included.
    pub buf: RawBuf,
    /// Offset of the first packet byte.
    pub data: usize,
    /// Offset one past the last packet byte.
    pub data_end: usize,
    /// Offset of the first metadata byte (`== data` when there is no metadata).
    pub data_meta: usize,
    /// Direct-access mode.
    pub direct: Direct,
    installed: Option<Installed>,
    /// The addresses a load of `data`, `data_end` and `data_meta` yields, kept current by
    /// [`Packet::sync_pointers`] (read by JIT runs serving context loads directly).
    pub(crate) pointers: Rc<[Cell<u64>; 3]>,
}

impl Packet {
    /// A packet whose bytes are `buf[data..data_end]`, with no metadata.
    pub(crate) fn new(buf: RawBuf, data: usize, data_end: usize, direct: Direct) -> Self {
        Packet {
            buf,
            data,
            data_end,
            data_meta: data,
            direct,
            installed: None,
            pointers: Rc::new([const { Cell::new(0) }; 3]),
        }
    }

    /// `old`'s buffer (kept at its address, its bytes as they are), pointer cells and installed
    /// regions, with new bounds and access mode: the caller rewrites the bytes and then brings
    /// the regions up to date with [`Packet::refresh`].
    pub(crate) fn recycle(
        old: Packet,
        data: usize,
        data_end: usize,
        data_meta: usize,
        direct: Direct,
    ) -> Self {
        Packet {
            data,
            data_end,
            data_meta,
            direct,
            ..old
        }
    }

    /// A packet whose `buf_len`-byte buffer holds `frame` at `start` and zeros elsewhere, with
    /// `data_end` right after the frame. `spare`'s buffer is kept (at its address, with its
    /// regions; see [`Packet::recycle`]) if it has at least `buf_len` bytes, else a new one is
    /// allocated. A kept buffer's bytes before `start` and from the frame's end to the old
    /// `data_end` are zeroed; bytes past an old `data_end` were never written.
    #[inline]
    pub(crate) fn place(
        spare: Option<Packet>,
        frame: &[u8],
        buf_len: usize,
        start: usize,
        data: usize,
        data_meta: usize,
        direct: Direct,
    ) -> Self {
        let end = start + frame.len();
        match spare {
            Some(old) if old.buf.len() >= buf_len => {
                old.buf.zero(0, start);
                old.buf.write(start, frame);
                old.buf.zero(end, old.data_end);
                Packet::recycle(old, data, end, data_meta, direct)
            }
            _ => {
                let mut bytes = vec![0u8; buf_len];
                if let Some(dst) = bytes.get_mut(start..end) {
                    dst.copy_from_slice(frame);
                }
                let mut p = Packet::new(RawBuf::from_vec(bytes), data, end, direct);
                p.data_meta = data_meta;
                p
            }
        }
    }

    /// Publishes the current `data`, `data_end` and `data_meta` addresses in `pointers`.
    pub(crate) fn sync_pointers(&self) {
        let [data, end, meta] = &*self.pointers;
        data.set(self.addr(self.data));
        end.set(self.addr(self.data_end));
        meta.set(self.addr(self.data_meta));
    }

    /// Address of byte `off` of the buffer.
    pub(crate) fn addr(&self, off: usize) -> u64 {
        self.buf.addr() + off as u64
    }

    /// Length of the packet data.
    pub(crate) fn len(&self) -> usize {
        self.data_end - self.data
    }

    /// Number of regions the packet has installed.
    pub(crate) fn installed_regions(&self) -> usize {
        self.installed.map_or(0, |i| {
            usize::from(i.packet.is_some()) + usize::from(i.meta.is_some())
        })
    }

    /// True while the packet's regions are in a memory map.
    pub(crate) fn is_installed(&self) -> bool {
        self.installed.is_some()
    }

    /// Inserts the packet and metadata regions (non-empty ones) if direct access is allowed.
    ///
    /// # Safety
    /// The regions point into `self.buf`: they must be removed (with [`Packet::uninstall`] or
    /// [`Packet::move_bounds`] on the same map) before this packet is dropped.
    pub(crate) unsafe fn install(&mut self, mem: &mut MemoryMap) -> Result<(), AccessError> {
        let mut inst = Installed::default();
        if self.direct == Direct::ReadWrite {
            if self.data_end > self.data {
                let r = self.region(RegionKind::Packet, self.data, self.data_end);
                // SAFETY: the range is inside `self.buf` (data <= data_end <= buf.len()), which stays
                // allocated until the caller removes the region (this function's contract).
                unsafe { mem.insert(r)? };
                inst.packet = Some((self.addr(self.data), (self.data_end - self.data) as u64));
            }
            if self.data > self.data_meta {
                let r = self.region(RegionKind::PacketMeta, self.data_meta, self.data);
                // SAFETY: as above, for [data_meta, data).
                if let Err(e) = unsafe { mem.insert(r) } {
                    if let Some((p, _)) = inst.packet {
                        mem.remove(p);
                    }
                    return Err(e);
                }
                inst.meta = Some((
                    self.addr(self.data_meta),
                    (self.data - self.data_meta) as u64,
                ));
            }
        }
        self.installed = Some(inst);
        self.sync_pointers();
        Ok(())
    }

    /// Removes the regions [`Packet::install`] inserted.
    pub(crate) fn uninstall(&mut self, mem: &mut MemoryMap) {
        if let Some(inst) = self.installed.take() {
            remove_if(mem, inst.packet, RegionKind::Packet);
            remove_if(mem, inst.meta, RegionKind::PacketMeta);
        }
    }

    /// True if `mem` holds exactly the regions this packet installed.
    pub(crate) fn installed_in(&self, mem: &MemoryMap) -> bool {
        let Some(inst) = self.installed else {
            return false;
        };
        let has = |region: Option<(u64, u64)>, kind| match region {
            Some((s, _)) => mem
                .region_at(s)
                .is_some_and(|r| r.start == s && r.kind == kind),
            None => true,
        };
        has(inst.packet, RegionKind::Packet) && has(inst.meta, RegionKind::PacketMeta)
    }

    /// Moves `data` and `data_meta` to new offsets and, if installed, re-installs the regions in
    /// `mem` (which must be the map they are installed in: see [`Packet::installed_in`]).
    pub(crate) fn move_bounds(
        &mut self,
        mem: &mut MemoryMap,
        data: usize,
        data_meta: usize,
    ) -> Result<(), AccessError> {
        debug_assert!(data_meta <= data && data <= self.data_end);
        let was_installed = self.is_installed();
        self.uninstall(mem);
        self.data = data;
        self.data_meta = data_meta;
        self.sync_pointers();
        if was_installed {
            // SAFETY: the regions were installed under `install`'s contract by the owner of this
            // packet, and replacing them keeps that contract: the owner still removes them (via
            // `uninstall`, which uses the updated record) before dropping the buffer.
            unsafe { self.install(mem)? };
        }
        Ok(())
    }

    /// Brings the installed regions (if any) and the pointer cells up to date with the current
    /// bounds, replacing only regions that changed (`mem` must be the map they are installed
    /// in, as for [`Packet::uninstall`]).
    pub(crate) fn refresh(&mut self, mem: &mut MemoryMap) -> Result<(), AccessError> {
        let Some(inst) = self.installed else {
            self.sync_pointers();
            return Ok(());
        };
        let wanted = |on: bool, from: usize, to: usize| {
            (on && to > from).then(|| (self.addr(from), (to - from) as u64))
        };
        let rw = self.direct == Direct::ReadWrite;
        let now = Installed {
            packet: wanted(rw, self.data, self.data_end),
            meta: wanted(rw, self.data_meta, self.data),
        };
        if now == inst {
            self.sync_pointers();
            return Ok(());
        }
        self.uninstall(mem);
        // SAFETY: the regions were installed under `install`'s contract by the owner of this
        // packet, and replacing them keeps that contract (as in `move_bounds`).
        unsafe { self.install(mem) }
    }

    fn region(&self, kind: RegionKind, from: usize, to: usize) -> Region {
        Region {
            start: self.addr(from),
            len: (to - from) as u64,
            kind,
            writable: true,
            elements: None,
        }
    }
}

fn remove_if(mem: &mut MemoryMap, region: Option<(u64, u64)>, kind: RegionKind) {
    if let Some((s, _)) = region
        && mem
            .region_at(s)
            .is_some_and(|r| r.start == s && r.kind == kind)
    {
        mem.remove(s);
    }
}

/// Everything one prepared run owns: the context image and the packet.
#[derive(Debug)]
pub(crate) struct RunState {
    /// The program type.
    pub prog_type: ProgType,
    /// The context image (UAPI layout; pointer fields are materialised on load, not stored).
    pub ctx: RawBuf,
    /// The packet, for packet program types.
    pub packet: Option<Packet>,
}

/// Shared handle to a run's state.
pub(crate) type Shared = Rc<RefCell<RunState>>;

thread_local! {
    /// Runs installed on this thread, by context address.
    static ACTIVE: RefCell<Vec<(u64, Weak<RefCell<RunState>>)>> = const { RefCell::new(Vec::new()) };
}

/// Makes `state` findable by helpers through its context address; fails once the thread's table
/// is destroyed (a run installed from a thread-local destructor at thread exit).
pub(crate) fn register(ctx_addr: u64, state: &Shared) -> Result<(), crate::HookError> {
    ACTIVE
        .try_with(|a| {
            let mut a = a.borrow_mut();
            a.retain(|(addr, w)| *addr != ctx_addr && w.strong_count() > 0);
            a.push((ctx_addr, Rc::downgrade(state)));
        })
        .map_err(|_| crate::HookError::ThreadExiting)
}

/// Forgets the run with this context address.
pub(crate) fn unregister(ctx_addr: u64) {
    // `try_with`: a run dropped by another thread-local's destructor at thread exit may come
    // after the table is gone (and with it every registration).
    let _ = ACTIVE.try_with(|a| a.borrow_mut().retain(|(addr, _)| *addr != ctx_addr));
}

/// The installed run whose context is at `ctx_addr`, if any.
pub(crate) fn lookup(ctx_addr: u64) -> Option<Shared> {
    ACTIVE
        .try_with(|a| {
            a.borrow()
                .iter()
                .find(|(addr, _)| *addr == ctx_addr)
                .and_then(|(_, w)| w.upgrade())
        })
        .ok()
        .flatten()
}
