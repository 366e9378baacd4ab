//! Build-time code generation; each generator lives in its own file under `build/`.

#[path = "build/aidl.rs"]
mod aidl;
#[path = "build/proto.rs"]
mod proto;

fn main() {
    proto::generate();
    aidl::generate();
}
