//! kflex-interp (work in progress).
