//! The service's state file, so that a restarted `abupdated` reports the truth.
//!
//! One small text file of `key=value` lines, replaced atomically and created 0600
//! ([`crate::state_file::replace`]). It keeps the state, progress, last error, the boot during
//! which the state was reached (`/proc/sys/kernel/random/boot_id`) and the request of a
//! URL update, so that an interrupted update can be resumed.
//!
//! The request is kept without its `AUTHORIZATION` pair (a bearer token or password must not
//! outlive the process that was handed it, in a file a backup or a bug report could copy);
//! the file only says there was one, and `resume()` after a restart then asks the client to
//! apply again with its headers, as update_engine always does. The engine's checkpoint makes
//! that new apply continue where the interrupted one stopped.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorCode, Result};
use crate::service::status::{State, Status};

const FILE_NAME: &str = "status";
const FORMAT_VERSION: &str = "1";

/// The persisted part of the service's state.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The last status reported.
    pub status: Status,
    /// The boot during which `status` was reached.
    pub boot_id: String,
    /// The URL request being applied, kept for `resume()` after a restart.
    pub request: Option<StoredRequest>,
}

/// An `applyPayload` request that can be replayed after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRequest {
    /// The payload's URL.
    pub url: String,
    /// Where the payload starts in it.
    pub offset: u64,
    /// The payload's size; 0 when the caller did not say.
    pub size: u64,
    /// The header pairs but `AUTHORIZATION`.
    pub headers: Vec<(String, String)>,
    /// The request carried an `AUTHORIZATION`, which was not kept.
    pub had_authorization: bool,
}

/// The header pair that becomes the HTTP `Authorization` header.
const AUTHORIZATION: &str = "AUTHORIZATION";

impl StoredRequest {
    /// What is kept of a URL request: everything but its `AUTHORIZATION`.
    pub fn new(url: &str, offset: u64, size: u64, headers: &[(String, String)]) -> Self {
        let (secret, kept): (Vec<_>, Vec<_>) = headers
            .iter()
            .cloned()
            .partition(|(key, _)| key.eq_ignore_ascii_case(AUTHORIZATION));
        StoredRequest {
            url: url.to_owned(),
            offset,
            size,
            headers: kept,
            had_authorization: !secret.is_empty(),
        }
    }
}

/// Reads and writes the state file in one directory.
#[derive(Debug)]
pub struct StateStore {
    dir: PathBuf,
}

impl StateStore {
    /// The state file in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StateStore { dir: dir.into() }
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The stored record; `None` if there is none yet.
    pub fn load(&self) -> Result<Option<Record>> {
        let path = self.path();
        let Some(bytes) = crate::state_file::read(&path)? else {
            return Ok(None);
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| crate::err!(DeviceError, "{}: not UTF-8", path.display()))?;
        parse(&text)
            .map(Some)
            .map_err(|e| e.context(path.display()))
    }

    /// Replaces the stored record; either the old or the new one survives a crash.
    pub fn save(&self, record: &Record) -> Result<()> {
        crate::state_file::replace(&self.path(), render(record).as_bytes())
    }

    /// Moves an unreadable state file aside so that the service can start fresh and
    /// the file stays for a post-mortem.
    pub fn quarantine(&self) -> Result<PathBuf> {
        let aside = self.dir.join(format!("{FILE_NAME}.bad"));
        fs::rename(self.path(), &aside)
            .map_err(|e| Error::io(format_args!("moving aside {}", self.path().display()), e))?;
        Ok(aside)
    }
}

/// Reads `/proc/sys/kernel/random/boot_id`, which changes on every boot.
pub fn current_boot_id() -> Result<String> {
    read_boot_id(Path::new("/proc/sys/kernel/random/boot_id"))
}

fn read_boot_id(path: &Path) -> Result<String> {
    let text = fs::read_to_string(path)
        .map_err(|e| Error::io(format_args!("reading {}", path.display()), e))?;
    let id = text.trim();
    if id.is_empty() || id.contains(char::is_whitespace) {
        crate::bail!(
            DeviceError,
            "{}: unexpected content {text:?}",
            path.display()
        );
    }
    Ok(id.to_owned())
}

fn render(record: &Record) -> String {
    let s = &record.status;
    let mut lines = vec![
        ("version", FORMAT_VERSION.to_owned()),
        ("state", s.state.name().to_owned()),
        ("done", s.done.to_string()),
        ("total", s.total.to_string()),
        ("error_code", s.error_code.as_i32().to_string()),
        ("error_message", escape(&s.error_message)),
        ("boot_id", escape(&record.boot_id)),
    ];
    if let Some(slot) = s.target_slot {
        lines.push(("target_slot", slot.to_string()));
    }
    if let Some(r) = &record.request {
        lines.push(("url", escape(&r.url)));
        lines.push(("offset", r.offset.to_string()));
        lines.push(("size", r.size.to_string()));
        for (key, value) in &r.headers {
            // `StoredRequest::new` dropped it already; this keeps it so for any record.
            if !key.eq_ignore_ascii_case(AUTHORIZATION) {
                lines.push(("header", escape(&format!("{key}={value}"))));
            }
        }
        if r.had_authorization {
            lines.push(("had_authorization", "1".to_owned()));
        }
    }
    lines
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

fn parse(text: &str) -> Result<Record> {
    let bad = |msg: String| Error::new(ErrorCode::DeviceError, format!("bad state file: {msg}"));
    let mut status = Status::default();
    let mut boot_id = None;
    let mut version = None;
    let (mut url, mut offset, mut size, mut headers) = (None, None, None, Vec::new());
    let mut had_authorization = false;
    for line in text.lines() {
        let (key, raw) = line
            .split_once('=')
            .ok_or_else(|| bad(format!("line {line:?}")))?;
        let value = unescape(raw).ok_or_else(|| bad(format!("escape in {line:?}")))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| bad(format!("number in {line:?}")))
        };
        match key {
            "version" => version = Some(value),
            "state" => {
                status.state =
                    State::from_name(&value).ok_or_else(|| bad(format!("state {value:?}")))?
            }
            "done" => status.done = number()?,
            "total" => status.total = number()?,
            "error_code" => {
                status.error_code = value
                    .parse::<i32>()
                    .ok()
                    .and_then(ErrorCode::from_i32)
                    .ok_or_else(|| bad(format!("error code {value:?}")))?
            }
            "error_message" => status.error_message = value,
            "boot_id" => boot_id = Some(value),
            "target_slot" => {
                status.target_slot =
                    Some(u32::try_from(number()?).map_err(|_| bad(format!("slot {value:?}")))?)
            }
            "url" => url = Some(value),
            "offset" => offset = Some(number()?),
            "size" => size = Some(number()?),
            // A file from a version that kept the token: forget it now.
            "header" => match value.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case(AUTHORIZATION) => had_authorization = true,
                Some((k, v)) => headers.push((k.to_owned(), v.to_owned())),
                None => return Err(bad(format!("header {value:?}"))),
            },
            "had_authorization" if value == "1" => had_authorization = true,
            _ => return Err(bad(format!("unknown key {key:?}"))),
        }
    }
    if version.as_deref() != Some(FORMAT_VERSION) {
        return Err(bad(format!(
            "version {version:?}, expected {FORMAT_VERSION}"
        )));
    }
    let request = match (url, offset, size) {
        (Some(url), Some(offset), Some(size)) => Some(StoredRequest {
            url,
            offset,
            size,
            headers,
            had_authorization,
        }),
        (None, None, None) if headers.is_empty() && !had_authorization => None,
        _ => return Err(bad("incomplete request".to_owned())),
    };
    let boot_id = boot_id.ok_or_else(|| bad("no boot_id".to_owned()))?;
    Ok(Record {
        status,
        boot_id,
        request,
    })
}

/// Keeps every value on one line.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            status: Status {
                state: State::Downloading,
                done: 4096,
                total: 1 << 20,
                error_code: ErrorCode::PayloadHash,
                error_message: "operation 3\nblob hash\\differs".to_owned(),
                current_slot: None,
                target_slot: Some(1),
            },
            boot_id: "0f6c2a4e-1b7d-4c1a-9d5e-3a2b1c0d9e8f".to_owned(),
            request: Some(StoredRequest {
                url: "https://ota.example/payload.bin".to_owned(),
                offset: 1234,
                size: 5678,
                headers: vec![("FILE_HASH".to_owned(), "q0/Yw==".to_owned())],
                had_authorization: false,
            }),
        }
    }

    #[test]
    fn record_round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        assert_eq!(store.load().unwrap(), None);
        store.save(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));

        let idle = Record {
            status: Status::default(),
            boot_id: "b".to_owned(),
            request: None,
        };
        store.save(&idle).unwrap();
        assert_eq!(store.load().unwrap(), Some(idle));
        let mode = std::os::unix::fs::MetadataExt::mode(&fs::metadata(store.path()).unwrap());
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn authorization_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path());
        let headers = [
            ("FILE_HASH", "q0/Yw=="),
            ("AUTHORIZATION", "Bearer s3cr3t-t0ken"),
            ("USER_AGENT", "agent"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let mut record = sample();
        record.request = Some(StoredRequest::new(
            "https://ota.example/p.bin",
            0,
            10,
            &headers,
        ));
        store.save(&record).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(!text.contains("s3cr3t"), "{text}");
        let loaded = store.load().unwrap().unwrap().request.unwrap();
        assert!(loaded.had_authorization);
        assert_eq!(loaded.headers.len(), 2);
        assert!(loaded.headers.iter().all(|(k, _)| k != "AUTHORIZATION"));

        // A file written by an older version, token included: read without it, and the
        // next write leaves it out.
        fs::write(
            store.path(),
            text.replace(
                "had_authorization=1\n",
                "header=AUTHORIZATION=Basic b2xkOnNlY3JldA==\n",
            ),
        )
        .unwrap();
        let old = store.load().unwrap().unwrap();
        assert_eq!(old.request.as_ref().unwrap(), &loaded);
        store.save(&old).unwrap();
        assert!(!fs::read_to_string(store.path())
            .unwrap()
            .contains("b2xkOnNlY3JldA"));
    }

    #[test]
    fn damaged_files_are_refused() {
        let good = render(&sample());
        let cases = [
            good.replace("version=1", "version=2"),
            good.replace("state=DOWNLOADING", "state=FLYING"),
            good.replace("error_code=24", "error_code=99"),
            good.replace("offset=1234\n", ""),
            good.replace("done=4096", "done=-1"),
            format!("{good}colour=blue\n"),
            format!("{good}no equals sign\n"),
            good.replace("\\n", "\\q"),
        ];
        for text in cases {
            let err = parse(&text).unwrap_err();
            assert_eq!(err.code, ErrorCode::DeviceError, "{text}");
        }
    }

    #[test]
    fn boot_id_is_read_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boot_id");
        fs::write(&path, "abc-123\n").unwrap();
        assert_eq!(read_boot_id(&path).unwrap(), "abc-123");
        fs::write(&path, "\n").unwrap();
        assert!(read_boot_id(&path).is_err());
        assert!(!current_boot_id().unwrap().is_empty());
    }
}
