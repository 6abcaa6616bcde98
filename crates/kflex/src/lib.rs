//! kflex: embedding API (work in progress).
