//! `BPF_MAP_TYPE_PERCPU_ARRAY`: one value slot per CPU for every index.
//!
//! Slots are laid out entry by entry, each entry holding the slots of CPU 0, 1, ... with every slot
//! padded to 8 bytes. The host API uses Linux's user-space layout: all CPUs' values of one entry,
//! each rounded up to 8 bytes, back to back.

use kflex_object::MapSpec;

use super::array::{array_index, check_array_spec, check_update_flags};
use super::raw::RawBuf;
use super::{BPF_NOEXIST, MapError, round_up8};

/// A per-CPU array map.
pub(crate) struct PercpuArrayMap {
    value_size: u32,
    max_entries: u32,
    cpus: u32,
    stride: u64,
    buf: RawBuf,
}

impl PercpuArrayMap {
    /// Creates the map with a slot for each of `cpus` CPUs.
    pub(crate) fn new(spec: &MapSpec, cpus: u32) -> Result<Self, MapError> {
        check_array_spec(spec)?;
        let cpus = cpus.max(1);
        let stride = round_up8(spec.value_size as u64);
        let total = stride
            .checked_mul(spec.max_entries as u64)
            .and_then(|n| n.checked_mul(cpus as u64))
            .ok_or_else(|| MapError::Create {
                name: spec.name.clone(),
                reason: "size overflows".into(),
            })?;
        let buf = RawBuf::zeroed(total).map_err(|reason| MapError::NoMemory {
            name: spec.name.clone(),
            reason,
        })?;
        Ok(PercpuArrayMap {
            value_size: spec.value_size,
            max_entries: spec.max_entries,
            cpus,
            stride,
            buf,
        })
    }

    /// Start of the slab.
    pub(crate) fn base(&self) -> u64 {
        self.buf.addr()
    }

    /// Length of the slab.
    pub(crate) fn slab_len(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Distance between slots.
    pub(crate) fn stride(&self) -> u64 {
        self.stride
    }

    /// Number of entries.
    pub(crate) fn max_entries(&self) -> u32 {
        self.max_entries
    }

    /// Number of CPUs with a slot per entry.
    pub(crate) fn cpus(&self) -> u32 {
        self.cpus
    }

    fn slot_off(&self, index: u32, cpu: u32) -> u64 {
        (index as u64 * self.cpus as u64 + cpu as u64) * self.stride
    }

    /// Address of `cpu`'s slot at `key` (`None` if the index or CPU is out of range).
    pub(crate) fn lookup_addr(&self, key: &[u8], cpu: u32) -> Result<Option<u64>, MapError> {
        let i = array_index(key)?;
        Ok((i < self.max_entries && cpu < self.cpus).then(|| self.base() + self.slot_off(i, cpu)))
    }

    /// Program-side update: writes `cpu`'s slot only (Linux `this_cpu_ptr`).
    pub(crate) fn update_cpu(
        &self,
        key: &[u8],
        value: &[u8],
        flags: u64,
        cpu: u32,
    ) -> Result<(), MapError> {
        let i = self.check_update(key, flags)?;
        if value.len() != self.value_size as usize {
            return Err(MapError::ValueSize {
                expected: self.value_size as usize,
                got: value.len(),
            });
        }
        if cpu >= self.cpus {
            return Err(MapError::Invalid(format!("cpu {cpu} has no slot")));
        }
        self.buf.write(self.slot_off(i, cpu), value);
        Ok(())
    }

    fn check_update(&self, key: &[u8], flags: u64) -> Result<u32, MapError> {
        check_update_flags(flags)?;
        let i = array_index(key)?;
        if i >= self.max_entries {
            return Err(MapError::Full);
        }
        if flags == BPF_NOEXIST {
            return Err(MapError::Exists);
        }
        Ok(i)
    }

    /// Host-side update of every CPU's slot from Linux's user-space layout
    /// (`cpus * round_up(value_size, 8)` bytes).
    pub(crate) fn update_all(&self, key: &[u8], value: &[u8], flags: u64) -> Result<(), MapError> {
        let i = self.check_update(key, flags)?;
        let expected = (self.stride * self.cpus as u64) as usize;
        if value.len() != expected {
            return Err(MapError::ValueSize {
                expected,
                got: value.len(),
            });
        }
        for (cpu, chunk) in value.chunks(self.stride as usize).enumerate() {
            let v = chunk.get(..self.value_size as usize).unwrap_or(chunk);
            self.buf.write(self.slot_off(i, cpu as u32), v);
        }
        Ok(())
    }

    /// Every CPU's value at `key` (each `value_size` bytes), or `None` if out of range.
    pub(crate) fn lookup_percpu(&self, key: &[u8]) -> Result<Option<Vec<Vec<u8>>>, MapError> {
        let i = array_index(key)?;
        if i >= self.max_entries {
            return Ok(None);
        }
        Ok(Some(
            (0..self.cpus)
                .filter_map(|c| self.buf.read(self.slot_off(i, c), self.value_size as usize))
                .collect(),
        ))
    }

    /// Every CPU's value at `key` in Linux's user-space layout (each padded to 8 bytes).
    pub(crate) fn lookup_flat(&self, key: &[u8]) -> Result<Option<Vec<u8>>, MapError> {
        Ok(self.lookup_percpu(key)?.map(|vals| {
            let mut out = Vec::with_capacity((self.stride * self.cpus as u64) as usize);
            for v in vals {
                out.extend_from_slice(&v);
                out.resize(out.len().next_multiple_of(self.stride as usize), 0);
            }
            out
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kflex_object::MapType;

    fn spec(value_size: u32, max_entries: u32) -> MapSpec {
        MapSpec::new("p", MapType::PercpuArray, 4, value_size, max_entries)
    }

    #[test]
    fn slots_are_per_cpu() {
        let m = PercpuArrayMap::new(&spec(4, 2), 3).unwrap();
        let k1 = 1u32.to_le_bytes();
        m.update_cpu(&k1, &[1, 1, 1, 1], 0, 0).unwrap();
        m.update_cpu(&k1, &[2, 2, 2, 2], 0, 2).unwrap();
        let all = m.lookup_percpu(&k1).unwrap().unwrap();
        assert_eq!(all, vec![vec![1; 4], vec![0; 4], vec![2; 4]]);
        let a0 = m.lookup_addr(&k1, 0).unwrap().unwrap();
        let a2 = m.lookup_addr(&k1, 2).unwrap().unwrap();
        assert_eq!(a2 - a0, 16);
        assert_eq!(m.lookup_addr(&k1, 3).unwrap(), None);
        assert_eq!(m.lookup_addr(&2u32.to_le_bytes(), 0).unwrap(), None);
    }

    #[test]
    fn host_layout_rounds_values_to_8() {
        let m = PercpuArrayMap::new(&spec(3, 1), 2).unwrap();
        let k0 = 0u32.to_le_bytes();
        let flat = [1, 2, 3, 0, 0, 0, 0, 0, 4, 5, 6, 0, 0, 0, 0, 0];
        assert!(matches!(
            m.update_all(&k0, &flat[..6], 0),
            Err(MapError::ValueSize {
                expected: 16,
                got: 6
            })
        ));
        m.update_all(&k0, &flat, BPF_EXIST_FLAG).unwrap();
        assert_eq!(m.lookup_flat(&k0).unwrap().unwrap(), flat.to_vec());
        assert_eq!(
            m.lookup_percpu(&k0).unwrap().unwrap(),
            vec![vec![1, 2, 3], vec![4, 5, 6]]
        );
        assert_eq!(m.update_all(&k0, &flat, 1), Err(MapError::Exists));
    }

    const BPF_EXIST_FLAG: u64 = 2;
}
