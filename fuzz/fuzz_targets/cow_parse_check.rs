//! What the `cow_parse` fuzz target does with an input, shared with the seed replay in
//! `tests/fuzz_seeds_cow.rs`, so both run exactly the same checks.
//!
//! The input is a whole COW file. It goes through `CowReader::parse` (whole, and up to each
//! label it names), the merge order and its check, and the data of every op. A panic is a bug,
//! and so is an `Ok` that breaks a promise: v3 parses exactly `op_count` ops, every sequence
//! entry names an op, and decompressed data fills exactly the op's unit.

use abupdate::cow::{CowError, CowReader, OpType};

/// Units larger than this are not decompressed here (the reader allows 16 MiB; the fuzzer
/// would spend its time allocating).
const MAX_CHECKED_UNIT: u64 = 1 << 20;

/// `ok:v<major>:ops=<n>:seq=<n>:data=<readable>/<data ops>:order=<safe|unsafe|broken>` or
/// `err:<kind>`.
pub fn run(data: &[u8]) -> Result<String, CowError> {
    let r = CowReader::parse(data, None)?;
    if r.header.major == 3 {
        assert_eq!(r.ops.len() as u64, r.header.op_count);
    }
    let order = match r.merge_order() {
        Ok(order) => {
            assert!(order.iter().all(|&i| i < r.ops.len()));
            if r.verify_merge_order().is_ok() {
                "safe"
            } else {
                "unsafe"
            }
        }
        Err(_) => "broken",
    };
    for p in &r.resume_points {
        if let Ok(cut) = CowReader::parse(data, Some(p.label)) {
            assert_eq!(cut.ops.len() as u64, p.op_index);
        }
    }
    let mut readable = 0;
    let mut data_ops = 0;
    let mut buf = Vec::new();
    for op in &r.ops {
        if !matches!(op.kind, OpType::Replace | OpType::Xor) {
            continue;
        }
        data_ops += 1;
        let unit = r.unit_size(op);
        if unit > MAX_CHECKED_UNIT {
            continue;
        }
        buf.resize(unit as usize, 0);
        if r.read_data(data, op, &mut buf).is_ok() {
            readable += 1;
        }
    }
    let _ = r.image_end();
    Ok(format!(
        "ok:v{}:ops={}:seq={}:data={readable}/{data_ops}:order={order}",
        r.header.major,
        r.ops.len(),
        r.sequence.len()
    ))
}

/// The outcome as the seed list records it.
pub fn outcome(data: &[u8]) -> String {
    match run(data) {
        Ok(s) => s,
        Err(CowError::Malformed(_)) => "err:malformed".into(),
        Err(CowError::Invalid(_)) => "err:invalid".into(),
        Err(CowError::Compression(_)) => "err:compression".into(),
        Err(CowError::Io(_)) => "err:io".into(),
    }
}
