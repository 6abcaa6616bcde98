//! kflex-hooks (work in progress).
