//! The payload manifest, checkpoint, libsnapshot state, puffin and lz4diff patch-header schemas, compiled with rust-protobuf's pure-Rust parser
//! (no `protoc` needed).

pub fn generate() {
    println!("cargo:rerun-if-changed=proto");
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/update_metadata.proto")
        .input("proto/checkpoint.proto")
        .input("proto/snapshot.proto")
        .cargo_out_dir("proto")
        .run_from_script();
    // Puffin's patch header, its own module so the format module `puffin` does not reach into
    // the payload's schema.
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/puffin.proto")
        .cargo_out_dir("puffin_proto")
        .run_from_script();
    // LZ4DIFF's patch header, likewise its own module.
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/lz4diff.proto")
        .cargo_out_dir("lz4diff_proto")
        .run_from_script();
}
