//! The payload manifest and checkpoint schemas, compiled with rust-protobuf's pure-Rust parser
//! (no `protoc` needed).

pub fn generate() {
    println!("cargo:rerun-if-changed=proto");
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/update_metadata.proto")
        .input("proto/checkpoint.proto")
        .cargo_out_dir("proto")
        .run_from_script();
}
