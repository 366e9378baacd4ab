//! `init/abupdated.rc` as init reads it: sections start at `service` or `on` lines and own the
//! indented lines after them. The new slot is marked successful by update_verifier, after it
//! has read the verified partitions, never by an init action of ours on `sys.boot_completed`
//! (which proves the system came up, not that its partitions are intact).

use std::path::Path;

/// `(section header, its commands)`, comments and blank lines dropped.
fn sections(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let (_, commands) = out.last_mut().expect("a command outside any section");
            commands.push(trimmed.to_owned());
        } else {
            out.push((trimmed.to_owned(), Vec::new()));
        }
    }
    out
}

fn rc() -> Vec<(String, Vec<String>)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("init/abupdated.rc");
    sections(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn nothing_marks_the_slot_successful() {
    for (header, commands) in rc() {
        for command in &commands {
            assert!(
                !command.contains("mark-successful") && !command.contains("markBootSuccessful"),
                "`{header}` runs `{command}`: marking the slot is update_verifier's job"
            );
        }
        assert!(
            !(header.starts_with("on ") && header.contains("sys.boot_completed")),
            "`{header}`: nothing of ours should hang on sys.boot_completed"
        );
    }
}

#[test]
fn the_service_is_started_on_ab_devices_only() {
    let sections = rc();
    let service = sections
        .iter()
        .find(|(h, _)| h.starts_with("service abupdated "))
        .expect("no abupdated service");
    assert!(service.1.iter().any(|c| c == "disabled"), "{service:?}");
    let enable = sections
        .iter()
        .find(|(_, c)| c.iter().any(|c| c == "enable abupdated"))
        .expect("nothing enables abupdated");
    assert_eq!(enable.0, "on property:ro.boot.slot_suffix=*");
}

#[test]
fn sections_own_their_indented_lines() {
    let parsed = sections("# c\non a\n    x\n\n    y\nservice s /bin/s\n  z\n");
    assert_eq!(
        parsed,
        vec![
            ("on a".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
            ("service s /bin/s".to_owned(), vec!["z".to_owned()]),
        ]
    );
}

/// `init/update_engine_compat.rc` replaces AOSP's update_engine.rc: the same service name,
/// class, user, groups and trigger (those of update_engine.rc), our executable in compat mode,
/// labelled so that init starts it in update_engine's domain.
#[test]
fn the_compat_service_takes_update_engines_place() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("init/update_engine_compat.rc")).unwrap();
    let sections = sections(&text);
    let (header, commands) = sections
        .iter()
        .find(|(h, _)| h.starts_with("service "))
        .expect("no service");
    let words: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(
        &words[..3],
        [
            "service",
            "update_engine",
            "/system/bin/abupdated_update_engine"
        ]
    );
    assert!(words.contains(&"--update-engine-compat"), "{header}");
    let state = words
        .iter()
        .position(|w| *w == "--state-dir")
        .expect("--state-dir");
    assert!(
        words[state + 1].starts_with("/data/misc/update_engine/"),
        "{header}"
    );
    for line in [
        "class late_start",
        "user root",
        "group root system wakelock inet cache media_rw",
        "disabled",
    ] {
        assert!(
            commands.iter().any(|c| c == line),
            "missing `{line}`: {commands:?}"
        );
    }
    let enable = sections
        .iter()
        .find(|(_, c)| c.iter().any(|c| c == "enable update_engine"))
        .expect("nothing enables update_engine");
    assert_eq!(enable.0, "on property:ro.boot.slot_suffix=*");

    let contexts = std::fs::read_to_string(root.join("sepolicy/file_contexts")).unwrap();
    assert!(contexts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f == [
            "/system/bin/abupdated_update_engine",
            "u:object_r:update_engine_exec:s0",
        ]
    }));
    let bp = std::fs::read_to_string(root.join("Android.bp")).unwrap();
    assert!(
        bp.contains("name: \"abupdated_update_engine\""),
        "no module installs it"
    );
    assert!(bp.contains("init_rc: [\"init/update_engine_compat.rc\"]"));
}
