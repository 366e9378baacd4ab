//! The messages build.rs generates into `OUT_DIR` (Cargo builds only).

include!(concat!(env!("OUT_DIR"), "/lz4diff_proto/mod.rs"));
