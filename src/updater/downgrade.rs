//! Downgrade checks, as update_engine makes them (`DeltaPerformer::CheckTimestampError`,
//! `CheckSPLDowngrade`): the payload's `max_timestamp` against the running build's, each
//! partition's `version` against the running partition's, and the security patch level against
//! the running one. Any of them older refuses the update (26).
//!
//! The running values are system properties, read through the property API on Android
//! (`ro.build.date.utc`, `ro.<partition>.build.date.utc` with `bootimage` for boot,
//! `ro.build.version.security_patch`) and, on a host, the same keys in a `build.prop`. Reading
//! fails closed: a build whose `ro.build.date.utc` is not set or not a number cannot be
//! checked, and is refused (31) when the updater is opened rather than treated as "no
//! checks". The one build nothing is checked against is a host device directory without any
//! `build.prop` ([`RunningBuild::load_host`]).

use std::path::Path;
use std::sync::Arc;

use super::snapshot_state::UpdateOrigin;
use crate::bail;
use crate::engine::metadata::Metadata;
use crate::error::{Error, Result};
use crate::sysprop::{Properties, PropertyFile};

const BUILD_DATE: &str = "ro.build.date.utc";
const SECURITY_PATCH: &str = "ro.build.version.security_patch";
const VIRTUAL_AB: &str = "ro.virtual_ab.enabled";

/// What the running build says about itself.
#[derive(Clone)]
pub struct RunningBuild {
    known: Option<Known>,
    /// `ro.virtual_ab.enabled=true`: a Virtual A/B device (what update_engine reads; the
    /// super metadata's flag is gone once a non-snapshot update wrote a 10.0 header).
    pub virtual_ab: bool,
}

#[derive(Clone)]
struct Known {
    timestamp: i64,
    security_patch_level: Option<String>,
    /// Partition timestamps are looked up per payload partition, as update_engine does.
    props: Arc<dyn Properties>,
}

impl std::fmt::Debug for RunningBuild {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.known {
            Some(k) => f
                .debug_struct("RunningBuild")
                .field("timestamp", &k.timestamp)
                .field("security_patch_level", &k.security_patch_level)
                .finish_non_exhaustive(),
            None => f.write_str("RunningBuild(unknown)"),
        }
    }
}

impl RunningBuild {
    /// The build `props` describe. Fails with 31 when `ro.build.date.utc` is not set or not a
    /// number, or a property cannot be read.
    pub fn new(props: Arc<dyn Properties>) -> Result<Self> {
        let timestamp = match props.get(BUILD_DATE)? {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| crate::err!(DeviceError, "{BUILD_DATE}={v:?} is not a timestamp"))?,
            None => bail!(
                DeviceError,
                "{BUILD_DATE} is not set: the running build cannot be checked for downgrades"
            ),
        };
        // update_engine skips the patch level check when the property is empty.
        let security_patch_level = props.get(SECURITY_PATCH)?.filter(|v| !v.is_empty());
        let virtual_ab = props.get(VIRTUAL_AB)?.is_some_and(|v| v.trim() == "true");
        Ok(RunningBuild {
            virtual_ab,
            known: Some(Known {
                timestamp,
                security_patch_level,
                props,
            }),
        })
    }

    /// Reads `build.prop`-style `key=value` lines.
    pub fn from_properties(text: &str) -> Result<Self> {
        Self::new(Arc::new(PropertyFile::parse(text)))
    }

    /// What a snapshot update records of this build when it begins (see [`UpdateOrigin`]);
    /// nothing, for a build nothing is known about.
    pub fn update_origin(&self) -> Result<UpdateOrigin> {
        match &self.known {
            Some(k) => UpdateOrigin::from_properties(k.props.as_ref()),
            None => Ok(UpdateOrigin::default()),
        }
    }

    /// A build nothing is known about: no downgrade check at all. Only for a host device
    /// directory without `build.prop` (see [`RunningBuild::load_host`]).
    pub fn unknown() -> Self {
        RunningBuild {
            known: None,
            virtual_ab: false,
        }
    }

    /// `DIR/build.prop` on a host device directory. No file is a device that declares no build
    /// (logged); a file that cannot be read, or that names no `ro.build.date.utc`, is an error.
    pub fn load_host(dir: &Path) -> Result<Self> {
        let path = dir.join("build.prop");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::warn!("{}: no build.prop, no downgrade checks", dir.display());
                return Ok(Self::unknown());
            }
            Err(e) => return Err(Error::io(format_args!("reading {}", path.display()), e)),
        };
        Self::new(Arc::new(PropertyFile::parse(&text))).map_err(|e| e.context(path.display()))
    }

    /// The running Android system's properties.
    #[cfg(target_os = "android")]
    pub fn from_system() -> Result<Self> {
        Self::new(Arc::new(crate::sysprop::SystemProperties))
    }

    /// The running build's `ro.build.date.utc`, when known.
    pub fn timestamp(&self) -> Option<i64> {
        self.known.as_ref().map(|k| k.timestamp)
    }
}

/// The property holding a partition's build timestamp (`bootimage` for boot).
fn partition_key(partition: &str) -> String {
    let part = if partition == "boot" {
        "bootimage"
    } else {
        partition
    };
    format!("ro.{part}.build.date.utc")
}

/// Refuses (26) a payload older than the running build by any of the three measures.
pub fn check(metadata: &Metadata, running: &RunningBuild) -> Result<()> {
    let Some(running) = &running.known else {
        return Ok(());
    };
    let manifest = &metadata.manifest;
    let now = running.timestamp;
    // A full payload must carry a max_timestamp no older than the running build; 0 (absent)
    // is as old as it gets. A partial update may leave it out: its partitions' versions speak.
    if !manifest.partial_update && manifest.max_timestamp < now {
        bail!(
            Downgrade,
            "payload max_timestamp {} is older than the running build ({now})",
            manifest.max_timestamp
        );
    }
    for p in &manifest.partitions {
        let key = partition_key(&p.name);
        let Some(old) = running.props.get(&key)?.filter(|v| !v.is_empty()) else {
            continue;
        };
        let Some(new) = p.version.as_deref() else {
            // update_engine: a partial update must version every partition the device
            // versions (kDownloadManifestParseError); a full one may leave versions out.
            if manifest.partial_update {
                bail!(
                    MalformedPayload,
                    "partial update: partition {} carries no version, but the running build has {key}",
                    p.name
                );
            }
            continue;
        };
        let Ok(old) = old.trim().parse::<i64>() else {
            bail!(DeviceError, "{key}={old:?} is not a timestamp");
        };
        // update_engine compares partition versions as timestamps; a non-numeric version
        // cannot be ordered, so it is refused rather than guessed at.
        let Ok(new) = new.parse::<i64>() else {
            bail!(
                Downgrade,
                "partition {} version {new:?} is not a timestamp",
                p.name
            );
        };
        if new < old {
            bail!(
                Downgrade,
                "partition {} version {new} is older than the running {old}",
                p.name
            );
        }
    }
    if let (Some(new), Some(now)) = (
        &manifest.security_patch_level,
        &running.security_patch_level,
    ) {
        // YYYY-MM-DD compares correctly as a string.
        if new.as_str() < now.as_str() {
            bail!(
                Downgrade,
                "security patch level {new} is older than the running {now}"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    #[test]
    fn reads_build_prop() {
        let b = RunningBuild::from_properties(
            "# comment\nro.build.date.utc=1700000000\nro.build.version.security_patch=2024-03-05\n\
             ro.system.build.date.utc=1700000001\nother=1\n",
        )
        .unwrap();
        let known = b.known.as_ref().unwrap();
        assert_eq!(known.timestamp, 1_700_000_000);
        assert_eq!(known.security_patch_level.as_deref(), Some("2024-03-05"));
        let system = known.props.get(&partition_key("system")).unwrap();
        assert_eq!(system.as_deref(), Some("1700000001"));
        assert_eq!(partition_key("boot"), "ro.bootimage.build.date.utc");
    }

    /// A build that does not say when it was made cannot be compared: an error, not "no
    /// checks" (on main, both of these opened with every check skipped).
    #[test]
    fn a_build_without_a_date_is_refused() {
        for text in [
            "ro.build.version.security_patch=2024-03-05\n",
            "ro.build.date.utc=yesterday\n",
        ] {
            let err = RunningBuild::from_properties(text).unwrap_err();
            assert_eq!(err.code, ErrorCode::DeviceError, "{text}: {err}");
            assert!(err.message.contains("ro.build.date.utc"), "{err}");
        }
    }

    #[test]
    fn an_unreadable_build_prop_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunningBuild::load_host(dir.path()).unwrap().known.is_none());
        // A directory where the file should be: reading it fails with something else than
        // "not found".
        std::fs::create_dir(dir.path().join("build.prop")).unwrap();
        let err = RunningBuild::load_host(dir.path()).unwrap_err();
        assert_eq!(err.code, ErrorCode::DeviceError, "{err}");
    }
}
