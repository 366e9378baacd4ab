//! Which postinstall programs an update runs, from its manifest and `RUN_POST_INSTALL` (no
//! I/O), and the record of them kept for `triggerPostinstall`.

use crate::error::Result;
use crate::payload::manifest::{Manifest, Postinstall};
use crate::{bail, err};

/// One partition's postinstall step in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The partition, without a slot suffix.
    pub partition: String,
    /// What to run from it.
    pub postinstall: Postinstall,
    /// Whether the program runs. A step that does not (an optional one under
    /// `RUN_POST_INSTALL=0`) still has its partition mounted and unmounted, as update_engine
    /// does: a partition that does not mount now would not mount at boot either.
    pub run: bool,
}

/// The steps of an update, in manifest order. update_engine's rule: `RUN_POST_INSTALL=0`
/// skips the *optional* programs only; a required one always runs.
pub fn plan(manifest: &Manifest, run_post_install: bool) -> Vec<Step> {
    manifest
        .partitions
        .iter()
        .filter_map(|p| {
            let step = p.postinstall.clone()?;
            Some(Step {
                partition: p.name.clone(),
                run: run_post_install || !step.optional,
                postinstall: step,
            })
        })
        .collect()
}

/// The steps `triggerPostinstall(partition)` runs: that partition's program, optional or
/// not (update_engine sets `run_post_install` for it), from the record of the applied update.
pub fn trigger(steps: &[Step], partition: &str) -> Result<Step> {
    let step = steps
        .iter()
        .find(|s| s.partition == partition)
        .ok_or_else(|| {
            err!(
                PostinstallFailed,
                "the applied update has no postinstall program for partition {}",
                crate::error::shown(partition)
            )
        })?;
    Ok(Step {
        run: true,
        ..step.clone()
    })
}

/// The record of an update's steps (text, one line per step:
/// `<partition> <fs or -> <optional 0|1> <path>`), written once its postinstall phase passed.
pub fn encode(steps: &[Step]) -> String {
    let mut out = String::from("abupdate-postinstall 1\n");
    for s in steps {
        let fs = match s.postinstall.filesystem_type.as_str() {
            "" => "-",
            fs => fs,
        };
        out += &format!(
            "{} {} {} {}\n",
            s.partition,
            fs,
            u8::from(s.postinstall.optional),
            s.postinstall.path
        );
    }
    out
}

/// Reads [`encode`]'s record back (every step with `run` set).
pub fn decode(text: &str) -> Result<Vec<Step>> {
    let mut lines = text.lines();
    if lines.next() != Some("abupdate-postinstall 1") {
        bail!(DeviceError, "the postinstall record has an unknown format");
    }
    lines
        .map(|line| {
            let bad = || {
                err!(
                    DeviceError,
                    "bad postinstall record line {}",
                    crate::error::shown(line)
                )
            };
            let mut fields = line.splitn(4, ' ');
            let mut next = || fields.next().ok_or_else(bad);
            let (partition, fs, optional, path) = (next()?, next()?, next()?, next()?);
            Ok(Step {
                partition: partition.to_owned(),
                postinstall: Postinstall {
                    path: path.to_owned(),
                    filesystem_type: if fs == "-" {
                        String::new()
                    } else {
                        fs.to_owned()
                    },
                    optional: match optional {
                        "0" => false,
                        "1" => true,
                        _ => return Err(bad()),
                    },
                },
                run: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(partition: &str, optional: bool, run: bool) -> Step {
        Step {
            partition: partition.into(),
            postinstall: Postinstall {
                path: "bin/post inst".into(),
                filesystem_type: if optional {
                    String::new()
                } else {
                    "ext4".into()
                },
                optional,
            },
            run,
        }
    }

    #[test]
    fn record_round_trips() {
        let steps = vec![step("system", false, true), step("vendor", true, true)];
        assert_eq!(decode(&encode(&steps)).unwrap(), steps);
        for bad in [
            "",
            "abupdate-postinstall 2\n",
            "abupdate-postinstall 1\nsystem ext4 2 p\n",
            "abupdate-postinstall 1\nsystem ext4\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trigger_runs_an_optional_step_and_refuses_unknown_partitions() {
        let steps = vec![step("system", false, true), step("vendor", true, false)];
        assert_eq!(
            trigger(&steps, "vendor").unwrap(),
            step("vendor", true, true)
        );
        let e = trigger(&steps, "odm").unwrap_err();
        assert_eq!(e.code, crate::ErrorCode::PostinstallFailed);
    }
}
