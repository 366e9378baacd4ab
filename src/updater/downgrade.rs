//! Downgrade checks, as update_engine makes them: the payload's `max_timestamp` against the
//! running build's, each partition's `version` against the running partition's, and the
//! security patch level against the running one. Any of them older refuses the update (26).
//!
//! The running values are system properties on Android (`ro.build.date.utc`,
//! `ro.<partition>.build.date.utc`, `ro.build.version.security_patch`) and, on a host, the same
//! keys in `DIR/build.prop`.

use std::collections::HashMap;
use std::path::Path;

use crate::bail;
use crate::engine::metadata::Metadata;
use crate::error::{Error, Result};

/// What the running build says about itself. Unknown values are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunningBuild {
    pub timestamp: Option<i64>,
    pub security_patch_level: Option<String>,
    /// Partition name → its build timestamp.
    pub partition_versions: HashMap<String, i64>,
    /// `ro.virtual_ab.enabled=true`: a Virtual A/B device (what update_engine reads; the
    /// super metadata's flag is gone once a non-snapshot update wrote a 10.0 header).
    pub virtual_ab: bool,
}

impl RunningBuild {
    /// Reads `build.prop`-style `key=value` lines.
    pub fn from_properties(text: &str) -> Self {
        let mut build = RunningBuild::default();
        for line in text.lines().map(str::trim).filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "ro.build.date.utc" => build.timestamp = value.parse().ok(),
                "ro.build.version.security_patch" if !value.is_empty() => {
                    build.security_patch_level = Some(value.to_owned())
                }
                "ro.virtual_ab.enabled" => build.virtual_ab = value == "true",
                key => {
                    if let Some(part) = partition_of(key) {
                        if let Ok(v) = value.parse() {
                            build.partition_versions.insert(part.to_owned(), v);
                        }
                    }
                }
            }
        }
        build
    }

    /// `DIR/build.prop` on a host device directory; no file means nothing to check against.
    pub fn load_host(dir: &Path) -> Result<Self> {
        let path = dir.join("build.prop");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Self::from_properties(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(path.display(), e)),
        }
    }

    /// The running system's properties, through `getprop`.
    #[cfg(target_os = "android")]
    pub fn from_system() -> Self {
        let out = std::process::Command::new("/system/bin/getprop").output();
        let text = out
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        // getprop prints `[key]: [value]`.
        let props: String = text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once("]: [")?;
                Some(format!(
                    "{}={}\n",
                    k.trim_start_matches('['),
                    v.trim_end_matches(']')
                ))
            })
            .collect();
        Self::from_properties(&props)
    }
}

/// `ro.<partition>.build.date.utc` names the partition's timestamp (`bootimage` for boot).
fn partition_of(key: &str) -> Option<&str> {
    let part = key.strip_prefix("ro.")?.strip_suffix(".build.date.utc")?;
    Some(if part == "bootimage" { "boot" } else { part })
}

/// Refuses (26) a payload older than the running build by any of the three measures.
pub fn check(metadata: &Metadata, running: &RunningBuild) -> Result<()> {
    let manifest = &metadata.manifest;
    if let Some(now) = running.timestamp {
        if manifest.max_timestamp != 0 && manifest.max_timestamp < now {
            bail!(
                Downgrade,
                "payload max_timestamp {} is older than the running build ({now})",
                manifest.max_timestamp
            );
        }
    }
    for p in &manifest.partitions {
        let (Some(new), Some(&old)) = (
            p.version.as_deref(),
            running.partition_versions.get(&p.name),
        ) else {
            continue;
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

    #[test]
    fn reads_build_prop() {
        let b = RunningBuild::from_properties(
            "# comment\nro.build.date.utc=1700000000\nro.build.version.security_patch=2024-03-05\n\
             ro.system.build.date.utc=1700000001\nro.bootimage.build.date.utc=1700000002\nother=1\n",
        );
        assert_eq!(b.timestamp, Some(1_700_000_000));
        assert_eq!(b.security_patch_level.as_deref(), Some("2024-03-05"));
        assert_eq!(b.partition_versions.get("system"), Some(&1_700_000_001));
        assert_eq!(b.partition_versions.get("boot"), Some(&1_700_000_002));
    }
}
