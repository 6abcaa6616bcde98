//! Block headers (the 8 bytes in front of each payload), as `alloc.h` defines them: bits 0..7
//! class, bit 8 allocated, bit 9 held by the host (in its pool), bits 16..47 chain length (head
//! of a refill chain), bits 48..63 magic.

/// Mask of the class bits.
pub const CLASS_MASK: u64 = 0xff;
/// The "allocated" bit (`KFLEX_HDR_ALLOCATED`).
pub const ALLOCATED: u64 = 1 << 8;
/// The "held by the host" bit: the block is in the host's pool (set when the host takes a
/// block back, cleared when it hands the block out in a chain).
pub const HOST: u64 = 1 << 9;
/// Shift of the chain-length field.
pub const COUNT_SHIFT: u32 = 16;
/// Mask of the chain-length field (after shifting).
pub const COUNT_MASK: u64 = 0xffff_ffff;
/// Shift of the magic tag.
pub const MAGIC_SHIFT: u32 = 48;
/// The magic tag (`KFLEX_BLOCK_MAGIC`).
pub const BLOCK_MAGIC: u64 = 0x6b66;

/// The header of a free block of class `cls`; `chain` is the chain length when the block heads
/// a chain pushed onto a refill stack, else 0.
pub const fn free_header(cls: usize, chain: u64) -> u64 {
    (BLOCK_MAGIC << MAGIC_SHIFT) | ((chain & COUNT_MASK) << COUNT_SHIFT) | (cls as u64 & CLASS_MASK)
}

/// True if `hdr` carries the magic tag.
pub const fn is_block(hdr: u64) -> bool {
    hdr >> MAGIC_SHIFT == BLOCK_MAGIC
}

/// True if `hdr` marks an allocated block.
pub const fn is_allocated(hdr: u64) -> bool {
    hdr & ALLOCATED != 0
}

/// The chain length recorded in a chain head's header.
pub const fn chain_len(hdr: u64) -> u64 {
    (hdr >> COUNT_SHIFT) & COUNT_MASK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_round_trip() {
        let h = free_header(3, 2048);
        assert!(is_block(h));
        assert!(!is_allocated(h));
        assert_eq!(h & CLASS_MASK, 3);
        assert_eq!(chain_len(h), 2048);
        assert!(is_allocated(h | ALLOCATED));
        assert!(!is_block(0));
    }
}
