//! Build-time code generation; each generator lives in its own file under `build/`.

#[path = "build/aidl.rs"]
mod aidl;

fn main() {
    aidl::generate();
}
