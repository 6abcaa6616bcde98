//! kflex-datastructures: data structures written in C against the kflex SDK.

#![warn(missing_docs)]
