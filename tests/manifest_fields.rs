//! The manifest's newer fields (Virtual A/B merge operations and COW estimates, the VABC
//! settings, apex_info, partial_update) reach `abupdate payload info`, and fields from a newer
//! update_metadata.proto than ours are ignored, as protobuf does, by the real engine path.

mod common;

use std::process::Command;

use abupdate::payload::proto::update_metadata as pb;
use protobuf::Message;

#[test]
fn payload_info_prints_newer_fields_and_unknown_fields_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("system.img");
    std::fs::write(&image, vec![0x5au8; 8 * 4096]).unwrap();
    let payload = tmp.path().join("payload.bin");
    common::build_payload(&payload, &[("system", image, None)]);

    let mut forge = common::forge::Forge::read(&payload);
    forge.edit(|m| {
        let p = &mut m.partitions[0];
        p.set_estimate_cow_size(40960);
        p.set_estimate_op_count_max(12);
        let mut e = pb::Extent::new();
        e.set_start_block(0);
        e.set_num_blocks(2);
        let mut merge = pb::CowMergeOperation::new();
        merge.set_type(pb::cow_merge_operation::Type::COW_COPY);
        merge.src_extent = Some(e.clone()).into();
        merge.dst_extent = Some(e).into();
        p.merge_operations.push(merge);
        p.mut_unknown_fields().add_varint(1000, 1);
        m.mut_unknown_fields()
            .add_length_delimited(1001, b"a field from the future".to_vec());
        let mut apex = pb::ApexInfo::new();
        apex.set_package_name("com.android.tzdata".into());
        apex.set_version(7);
        apex.set_is_compressed(true);
        apex.set_decompressed_size(1 << 20);
        m.apex_info.push(apex);
        let d = m.dynamic_partition_metadata.mut_or_insert_default();
        let mut g = pb::DynamicPartitionGroup::new();
        g.set_name("main".into());
        g.set_size(1 << 30);
        g.partition_names.push("system".into());
        d.groups.push(g);
        d.set_vabc_enabled(true);
        d.set_vabc_compression_param("lz4".into());
        d.set_cow_version(3);
        d.set_compression_factor(65536);
    });
    // The forged manifest really carries the unknown fields.
    let m = pb::DeltaArchiveManifest::parse_from_bytes(&forge.manifest).unwrap();
    assert_eq!(m.unknown_fields().iter().count(), 1);
    std::fs::write(&payload, forge.to_bytes()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_abupdate"))
        .args(["payload", "info"])
        .arg(&payload)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "cow estimate 40960 bytes, 12 ops max; 1 merge ops COW_COPY 1",
        "apex:              com.android.tzdata v7, compressed, 1048576 bytes decompressed",
        "virtual A/B:       vabc enabled, compression lz4, cow version 3, compression factor 65536",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
