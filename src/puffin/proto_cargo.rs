//! The messages build.rs generates into `OUT_DIR` (Cargo builds only).

include!(concat!(env!("OUT_DIR"), "/puffin_proto/mod.rs"));
