//! Build and system properties: on Android through bionic's property API
//! (`__system_property_find`, `__system_property_get`), on a host from a `build.prop` file.
//!
//! The property API rather than running `getprop`: no child process and no parsing of its
//! output, and a property that is not set is told apart from one that cannot be read. Callers
//! decide which properties must be set; this module only reports what is there.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};

/// Where properties are read from.
pub trait Properties: Send + Sync {
    /// The value of `name`, `None` when it is not set.
    fn get(&self, name: &str) -> Result<Option<String>>;
}

/// Properties that can also be set: `ctl.start` asks init to start a service, as libsnapshot's
/// `EnsureSnapuserdStarted` does (`snapuserd_client.cpp`). SELinux decides who may set what.
pub trait SetProperties: Properties {
    /// Sets `name` to `value`; a refusal (SELinux, init) is an error.
    fn set(&self, name: &str, value: &str) -> Result<()>;
}

/// `key=value` lines, as in `build.prop` (`#` comments, blank lines ignored; a later line
/// overrides an earlier one, as init's loader does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PropertyFile {
    values: HashMap<String, String>,
}

impl PropertyFile {
    /// Parses the lines of `text`.
    pub fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        PropertyFile { values }
    }

    /// Reads `path`; a file that cannot be read is an error.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
        Ok(Self::parse(&text))
    }
}

impl Properties for PropertyFile {
    fn get(&self, name: &str) -> Result<Option<String>> {
        Ok(self.values.get(name).cloned())
    }
}

/// A `key=value` file read again at every lookup: a host's stand-in for properties that
/// change while the daemon runs (`sys.boot_completed`).
#[derive(Clone, Debug)]
pub struct LivePropertyFile {
    path: std::path::PathBuf,
}

impl LivePropertyFile {
    /// The file at `path` (read at each lookup; missing: nothing set).
    pub fn new(path: &Path) -> Self {
        LivePropertyFile {
            path: path.to_owned(),
        }
    }
}

impl Properties for LivePropertyFile {
    fn get(&self, name: &str) -> Result<Option<String>> {
        PropertyFile::load(&self.path)?.get(name)
    }
}

/// The running Android system's properties.
#[cfg(target_os = "android")]
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemProperties;

#[cfg(target_os = "android")]
impl Properties for SystemProperties {
    fn get(&self, name: &str) -> Result<Option<String>> {
        // bionic's property API, as the libc crate declares it (re-exported by nix).
        use nix::libc;
        use std::ffi::{CStr, CString};
        let cname = CString::new(name)
            .map_err(|_| crate::err!(DeviceError, "property name {name:?} holds a NUL"))?;
        // SAFETY: `cname` is a NUL-terminated string that outlives the call; the function only
        // reads it and returns a pointer into the property area (or null), which is not kept.
        let info = unsafe { libc::__system_property_find(cname.as_ptr()) };
        if info.is_null() {
            return Ok(None);
        }
        let mut value: [libc::c_char; libc::PROP_VALUE_MAX as usize] =
            [0; libc::PROP_VALUE_MAX as usize];
        // SAFETY: `value` holds PROP_VALUE_MAX bytes, the most the function writes (the value
        // and its NUL); `cname` is NUL-terminated.
        let len = unsafe { libc::__system_property_get(cname.as_ptr(), value.as_mut_ptr()) };
        // The function never writes more than PROP_VALUE_MAX - 1 characters; anything else is
        // not a value. (Read-only values longer than that need __system_property_read_callback;
        // the properties read here, dates, patch level, flags and the slot suffix, are short.)
        if !(0..libc::PROP_VALUE_MAX).contains(&len) {
            crate::bail!(DeviceError, "property {name} cannot be read ({len})");
        }
        // SAFETY: the function NUL-terminated what it wrote within `value`, which was zeroed.
        let text = unsafe { CStr::from_ptr(value.as_ptr()) };
        text.to_str()
            .map(|s| Some(s.to_owned()))
            .map_err(|_| crate::err!(DeviceError, "property {name} is not UTF-8"))
    }
}

/// Boolean property `name` as libbase's `GetBoolProperty` reads it: "1", "y", "yes", "on" and
/// "true" are true, "0", "n", "no", "off" and "false" false, anything else (or unset) `default`.
pub fn get_bool(props: &dyn Properties, name: &str, default: bool) -> Result<bool> {
    Ok(match props.get(name)?.as_deref() {
        Some("1" | "y" | "yes" | "on" | "true") => true,
        Some("0" | "n" | "no" | "off" | "false") => false,
        _ => default,
    })
}

/// Unsigned property `name` as libbase's `GetUintProperty<uint32_t>` reads it: a decimal
/// number that fits, else (or unset) `default`.
pub fn get_u32(props: &dyn Properties, name: &str, default: u32) -> Result<u32> {
    Ok(props
        .get(name)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(default))
}

#[cfg(target_os = "android")]
impl SetProperties for SystemProperties {
    fn set(&self, name: &str, value: &str) -> Result<()> {
        use nix::libc;
        use std::ffi::CString;
        let nul = |what: &str| crate::err!(DeviceError, "property {what:?} holds a NUL");
        let cname = CString::new(name).map_err(|_| nul(name))?;
        let cvalue = CString::new(value).map_err(|_| nul(value))?;
        // SAFETY: both are NUL-terminated strings that outlive the call, which only reads them.
        let rc = unsafe { libc::__system_property_set(cname.as_ptr(), cvalue.as_ptr()) };
        if rc != 0 {
            crate::bail!(
                DeviceError,
                "setting property {name}={value} was refused ({rc})"
            );
        }
        Ok(())
    }
}

/// Whether the running Android build is debuggable (`ro.debuggable=1`: userdebug and eng). A
/// property that cannot be read counts as not debuggable.
#[cfg(target_os = "android")]
pub fn debuggable() -> bool {
    matches!(SystemProperties.get("ro.debuggable"), Ok(Some(v)) if v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_prop_lines() {
        let p = PropertyFile::parse("# c\nro.a=1\n  ro.b = x y \nnot a pair\nro.a=2\nro.e=\n");
        assert_eq!(p.get("ro.a").unwrap().as_deref(), Some("2"));
        assert_eq!(p.get("ro.b").unwrap().as_deref(), Some("x y"));
        assert_eq!(p.get("ro.e").unwrap().as_deref(), Some(""));
        assert_eq!(p.get("ro.c").unwrap(), None);
    }

    #[test]
    fn bool_and_uint_properties_read_as_libbase_does() {
        let p = PropertyFile::parse("a=1\nb=on\nc=false\nd=maybe\nn=64\nbig=4294967296\nneg=-1\n");
        assert!(get_bool(&p, "a", false).unwrap());
        assert!(get_bool(&p, "b", false).unwrap());
        assert!(!get_bool(&p, "c", true).unwrap());
        assert!(get_bool(&p, "d", true).unwrap());
        assert!(!get_bool(&p, "unset", false).unwrap());
        assert_eq!(get_u32(&p, "n", 0).unwrap(), 64);
        assert_eq!(get_u32(&p, "big", 7).unwrap(), 7);
        assert_eq!(get_u32(&p, "neg", 7).unwrap(), 7);
        assert_eq!(get_u32(&p, "unset", 0).unwrap(), 0);
    }

    #[test]
    fn an_unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = PropertyFile::load(&dir.path().join("missing.prop")).unwrap_err();
        assert!(err.message.contains("missing.prop"), "{err}");
        assert_eq!(err.io_kind(), Some(std::io::ErrorKind::NotFound), "{err}");
    }
}
