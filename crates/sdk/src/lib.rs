//! kflex-sdk: the host side of the C SDK in `sdk/include/kflex` (heap allocator refill,
//! cancellation cleanup of heap locks and in-flight allocations).

#![warn(missing_docs)]
