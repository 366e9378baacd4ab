//! URLs as the service shows them: in its log, `dumpsys` and the status every app may read.
//!
//! OTA servers put credentials in URLs (signed query strings, `user:password@`); anything
//! that leaves the daemon shows a URL without its userinfo, query and fragment. The state file
//! (mode 0600, the daemon's own) keeps the whole URL: a resume after a restart needs it.

/// `url` without userinfo, query and fragment (`?…` marks a dropped query).
pub fn url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        // Not a URL we understand: nothing of it is safe to show.
        return "(unparsed URL)".to_owned();
    };
    let (scheme, rest) = url.split_at(scheme_end + 3);
    let path_at = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(path_at);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (path, cut) = match tail.find(['?', '#']) {
        Some(at) => (&tail[..at], true),
        None => (tail, false),
    };
    let mut out = format!("{scheme}{host}{path}");
    if cut {
        out.push_str("?…");
    }
    out
}

/// `text` with every URL in it redacted as [`url`] does: for error messages, which may quote
/// the payload's URL or a redirect's.
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme runs back from "://" over the characters a scheme may hold.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        if start == at {
            // "://" without a scheme: not a URL, keep it.
            out.push_str(&rest[at..end]);
        } else {
            out.push_str(&url(&rest[start..end]));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A logger that hands every record to `L` with its URLs redacted: the one place that covers
/// every line the process logs, the download's retries and redirects included.
pub struct RedactingLogger<L>(pub L);

impl<L: log::Log> log::Log for RedactingLogger<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.0.enabled(record.metadata()) {
            return;
        }
        let text = urls_in(&record.args().to_string());
        self.0.log(
            &log::Record::builder()
                .metadata(record.metadata().clone())
                .args(format_args!("{text}"))
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    fn flush(&self) {
        self.0.flush()
    }
}

/// Installs `logger`, wrapped in a [`RedactingLogger`], as the process's logger.
pub fn install_logger(
    logger: impl log::Log + 'static,
    level: log::LevelFilter,
) -> std::result::Result<(), log::SetLoggerError> {
    // Once per process; `set_logger` needs no `std` feature of `log` (Android's may lack it).
    log::set_logger(Box::leak(Box::new(RedactingLogger(logger))))?;
    log::set_max_level(level);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Log for Lines {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Info
        }
        fn log(&self, record: &log::Record<'_>) {
            let line = format!("{} {}: {}", record.level(), record.target(), record.args());
            self.0.lock().unwrap().push(line);
        }
        fn flush(&self) {}
    }

    #[test]
    fn the_logger_redacts_every_line() {
        let logger = RedactingLogger(Lines::default());
        let url = "https://cdn.example/p.bin?sig=s3cr3t";
        logger.log(
            &log::Record::builder()
                .level(log::Level::Warn)
                .target("abupdate::download")
                .args(format_args!("download of {url} interrupted at byte 7"))
                .build(),
        );
        logger.log(
            &log::Record::builder()
                .level(log::Level::Debug)
                .args(format_args!("{url} filtered out"))
                .build(),
        );
        assert_eq!(
            *logger.0 .0.lock().unwrap(),
            ["WARN abupdate::download: download of https://cdn.example/p.bin?… interrupted at byte 7"]
        );
    }

    #[test]
    fn credentials_query_and_fragment_are_dropped() {
        for (raw, shown) in [
            ("https://ota.example/p.bin", "https://ota.example/p.bin"),
            (
                "https://u:secret@ota.example:8443/a/p.bin?sig=abc&exp=1#x",
                "https://ota.example:8443/a/p.bin?…",
            ),
            ("http://h?token=1", "http://h?…"),
            ("http://user@h", "http://h"),
            (
                "file:///data/ota/payload.bin",
                "file:///data/ota/payload.bin",
            ),
            ("no url at all", "(unparsed URL)"),
        ] {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn urls_inside_messages_are_redacted() {
        let message = "GET \"https://u:pw@cdn.example/p?X-Amz-Signature=s3cr3t\" answered 403; \
                       redirected from http://a.example/x?k=v to https://b.example/y";
        let shown = urls_in(message);
        assert_eq!(
            shown,
            "GET \"https://cdn.example/p?…\" answered 403; \
             redirected from http://a.example/x?… to https://b.example/y"
        );
        assert!(!shown.contains("s3cr3t") && !shown.contains("pw"));
        assert_eq!(urls_in("a :// b"), "a :// b");
        assert_eq!(urls_in(""), "");
    }
}
