//! The part of URLs a GET client needs: scheme, host, port and request target, and resolving
//! a redirect's `Location` against the URL it answered.
//!
//! No percent-decoding or normalisation happens: the target goes to the server byte for byte as
//! the caller (or the redirecting server) wrote it, which is what both expect.

use std::fmt;

use crate::error::shown;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpUrl {
    pub tls: bool,
    /// The host name or IP address, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`; the fragment is dropped.
    pub target: String,
}

impl HttpUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = strip_prefix_ci(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "http://") {
            (false, rest)
        } else {
            return Err(format!("not an http(s) URL: {}", shown(text)));
        };
        if let Some(bad) = rest.bytes().find(|b| *b <= b' ' || *b == 0x7f) {
            return Err(format!(
                "URL {} holds the control or space byte {bad:#04x}",
                shown(text)
            ));
        }
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, remainder) = rest.split_at(split);
        if authority.contains('@') {
            return Err(format!(
                "URL {} carries credentials, which are not supported: pass an Authorization header",
                shown(text)
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_host_port(authority, default_port)
            .ok_or_else(|| format!("URL {} has no valid host and port", shown(text)))?;
        Ok(HttpUrl {
            tls,
            host,
            port,
            target: target_of(remainder),
        })
    }

    /// Where a redirect's `Location` points, relative to this URL.
    pub fn join(&self, location: &str) -> Result<Self, String> {
        let location = location.trim();
        if strip_prefix_ci(location, "http://").is_some()
            || strip_prefix_ci(location, "https://").is_some()
        {
            return Self::parse(location);
        }
        if location.starts_with("//") {
            let scheme = if self.tls { "https:" } else { "http:" };
            return Self::parse(&format!("{scheme}{location}"));
        }
        if location.contains("://") {
            return Err(format!("redirect to unsupported URL {}", shown(location)));
        }
        if let Some(bad) = location.bytes().find(|b| *b <= b' ' || *b == 0x7f) {
            return Err(format!("redirect location holds the byte {bad:#04x}"));
        }
        let path = self.target.split(['?', '#']).next().unwrap_or("/");
        let target = if location.starts_with('/') {
            target_of(location)
        } else if location.starts_with('?') {
            target_of(&format!("{path}{location}"))
        } else {
            let dir = path.rfind('/').map_or("/", |end| &path[..=end]);
            target_of(&format!("{dir}{location}"))
        };
        Ok(HttpUrl {
            target,
            ..self.clone()
        })
    }

    /// Scheme, host and port: credentials must not follow a redirect to another origin.
    pub fn same_origin(&self, other: &HttpUrl) -> bool {
        self.tls == other.tls
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }

    /// The `Host` header value: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.tls { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.authority(), self.target)
    }
}

pub(crate) fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        if !host.contains(':') {
            return None;
        }
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || (!authority.starts_with('[') && host.contains(['[', ']', ':'])) {
        return None;
    }
    let port = match port {
        None | Some("") => default_port,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => digits.parse().ok()?,
        Some(_) => return None,
    };
    (port != 0).then(|| (host.to_owned(), port))
}

fn target_of(remainder: &str) -> String {
    let without_fragment = remainder.split('#').next().unwrap_or("");
    if without_fragment.starts_with('/') {
        without_fragment.to_owned()
    } else {
        format!("/{without_fragment}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> HttpUrl {
        HttpUrl::parse(text).unwrap()
    }

    #[test]
    fn parses_scheme_host_port_target() {
        let u = url("https://ota.example.com/a/b/payload.bin?sig=1#frag");
        assert_eq!(
            u,
            HttpUrl {
                tls: true,
                host: "ota.example.com".into(),
                port: 443,
                target: "/a/b/payload.bin?sig=1".into(),
            }
        );
        assert_eq!(
            u.to_string(),
            "https://ota.example.com/a/b/payload.bin?sig=1"
        );
        let u = url("HTTP://127.0.0.1:8080");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.target.as_str()),
            (false, "127.0.0.1", 8080, "/")
        );
        assert_eq!(u.authority(), "127.0.0.1:8080");
        let u = url("http://[::1]:81/x?q");
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 81, "/x?q")
        );
        assert_eq!(u.authority(), "[::1]:81");
        assert_eq!(url("http://h?q=1").target, "/?q=1");
        assert_eq!(url("http://h:/p").port, 80);
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        for bad in [
            "ftp://h/x",
            "http://",
            "http:///x",
            "http://user:pw@h/x",
            "http://h:0/",
            "http://h:99999/",
            "http://h:8a/",
            "http://h/a b",
            "http://h/a\r\nX: y",
            "http://[::1/x",
            "http://a:b:c/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn joins_redirect_locations() {
        let base = url("https://h:8443/dir/sub/payload.bin?x=1");
        assert_eq!(
            base.join("http://cdn/p").unwrap().to_string(),
            "http://cdn/p"
        );
        assert_eq!(
            base.join("//cdn:1/p").unwrap().to_string(),
            "https://cdn:1/p"
        );
        assert_eq!(
            base.join("/root?y").unwrap().to_string(),
            "https://h:8443/root?y"
        );
        assert_eq!(
            base.join("other.bin").unwrap().to_string(),
            "https://h:8443/dir/sub/other.bin"
        );
        assert_eq!(
            base.join("?z").unwrap().to_string(),
            "https://h:8443/dir/sub/payload.bin?z"
        );
        assert!(base.join("ftp://x/y").is_err());
        assert!(base.join("/a\nb").is_err());
        assert!(base.same_origin(&base.join("/z").unwrap()));
        assert!(!base.same_origin(&base.join("https://h/z").unwrap()));
        assert!(!base.same_origin(&url("http://h:8443/")));
    }
}
