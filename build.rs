//! Compiles the payload manifest schema with rust-protobuf's pure-Rust parser (no `protoc`).

fn main() {
    println!("cargo:rerun-if-changed=proto");
    protobuf_codegen::Codegen::new()
        .pure()
        .include("proto")
        .input("proto/update_metadata.proto")
        .input("proto/checkpoint.proto")
        .cargo_out_dir("proto")
        .run_from_script();
}
