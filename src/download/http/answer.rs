//! Judging a response: is it the range asked for, of the file first seen, of the right size?
//! The policy is listed in `mod.rs`.

use std::time::Duration;

use super::conn::{Chunk, Framing};
use super::head::Head;
use super::{protocol, Dial, Fault, HttpSource, HttpUrl, Identity, MAX_DISCARD};
use crate::error::shown;

impl<D: Dial> HttpSource<D> {
    pub(super) fn answer(
        &mut self,
        url: &HttpUrl,
        head: &Head,
    ) -> std::result::Result<Answer, Fault> {
        match head.status {
            206 => self.accept_partial(head).map(Answer::Body),
            200 => self.accept_full(head).map(Answer::Body),
            301 | 302 | 303 | 307 | 308 => self.redirect(url, head).map(Answer::Redirect),
            416 => self.unsatisfiable(head).map(|()| Answer::End),
            408 | 429 | 500..=599 => Err(Fault::Retry {
                why: format!("{url} answered {} {}", head.status, shown(&head.reason)),
                after: head.retry_after.map(Duration::from_secs),
            }),
            status => Err(protocol(format!(
                "{url} answered {status} {}",
                shown(&head.reason)
            ))),
        }
    }

    fn accept_partial(&mut self, head: &Head) -> std::result::Result<Framing, Fault> {
        check_encoding(head)?;
        let range = head
            .content_range
            .ok_or_else(|| protocol("206 response without Content-Range".into()))?;
        let (first, last) = range
            .span
            .ok_or_else(|| protocol("206 response with an unsatisfied Content-Range".into()))?;
        self.check_identity(head, range.total)?;
        let wanted = self.wanted()?;
        if first != wanted {
            return Err(protocol(format!(
                "asked for bytes from {wanted}, the server sent bytes from {first}"
            )));
        }
        if let Some(size) = self.size {
            // `open` checked that `base + size` fits; a request is only made while `pos < size`.
            let end = (self.base + size).saturating_sub(1);
            if last > end {
                return Err(protocol(format!(
                    "asked for bytes up to {end}, the server sent up to {last}"
                )));
            }
        }
        if let Some(total) = range.total {
            self.check_total(total)?;
        }
        // `bytes 0-18446744073709551615/*` names 2^64 bytes, one more than a u64 holds.
        let length = (last - first).checked_add(1).ok_or_else(|| {
            protocol(format!(
                "Content-Range bytes {first}-{last} is longer than any file"
            ))
        })?;
        if head.chunked {
            return Ok(Framing::Chunked(Chunk::Size));
        }
        if head
            .content_length
            .is_some_and(|declared| declared != length)
        {
            return Err(protocol(format!(
                "Content-Length differs from the {length} bytes of Content-Range"
            )));
        }
        Ok(Framing::Length(length))
    }

    fn accept_full(&mut self, head: &Head) -> std::result::Result<Framing, Fault> {
        check_encoding(head)?;
        let total = if head.chunked {
            None
        } else {
            head.content_length
        };
        self.check_identity(head, total)?;
        let skip = self.wanted()?;
        if skip > MAX_DISCARD {
            return Err(protocol(format!(
                "the server ignores Range requests (it answered 200 to a request for bytes from {skip}); \
                 resuming would mean downloading those {skip} bytes again"
            )));
        }
        if let Some(total) = total {
            self.check_total(total)?;
        }
        self.discard = skip;
        Ok(match (head.chunked, head.content_length) {
            (true, _) => Framing::Chunked(Chunk::Size),
            (false, Some(length)) => Framing::Length(length),
            (false, None) => Framing::UntilClose,
        })
    }

    /// The file offset of the next payload byte.
    pub(super) fn wanted(&self) -> std::result::Result<u64, Fault> {
        self.base.checked_add(self.pos).ok_or_else(|| {
            Fault::Fatal(crate::err!(
                SizeMismatch,
                "payload byte {} at offset {} lies past any file",
                self.pos,
                self.base
            ))
        })
    }

    fn redirect(&mut self, url: &HttpUrl, head: &Head) -> std::result::Result<HttpUrl, Fault> {
        let location = head
            .location
            .as_deref()
            .ok_or_else(|| protocol(format!("{url} answered {} without Location", head.status)))?;
        let next = url.join(location).map_err(protocol)?;
        if url.tls && !next.tls {
            return Err(protocol(format!(
                "refusing the redirect from {url} to plain-text {next}"
            )));
        }
        log::debug!("{url} redirects to {next}");
        Ok(next)
    }

    fn unsatisfiable(&mut self, head: &Head) -> std::result::Result<(), Fault> {
        let total = head.content_range.and_then(|range| range.total);
        self.check_identity(head, total)?;
        let wanted = self.wanted()?;
        match total {
            Some(total) if self.size.is_none() && total == wanted => {
                self.size = Some(self.pos);
                Ok(())
            }
            Some(total) => Err(Fault::Fatal(crate::err!(
                SizeMismatch,
                "the file on the server has {total} bytes, too few for payload byte {} at {wanted}",
                self.pos
            ))),
            None => Err(Fault::Fatal(crate::err!(
                SizeMismatch,
                "the server has no bytes from {wanted} (416 Range Not Satisfiable)"
            ))),
        }
    }

    /// The file must stay the one the first response described.
    pub(super) fn check_identity(
        &mut self,
        head: &Head,
        total: Option<u64>,
    ) -> std::result::Result<(), Fault> {
        let seen = Identity {
            etag: head.etag.clone(),
            last_modified: head.last_modified.clone(),
            total,
        };
        let Some(first) = &self.identity else {
            self.identity = Some(seen);
            return Ok(());
        };
        let changed = |what: &str, before: &dyn std::fmt::Display, now: &dyn std::fmt::Display| {
            Err(Fault::Fatal(crate::err!(
                DownloadChanged,
                "the payload on the server changed during the download: {what} was {before}, now {now}"
            )))
        };
        if let (Some(before), Some(now)) = (&first.etag, &seen.etag) {
            if weak(before) != weak(now) {
                return changed("ETag", &shown(before), &shown(now));
            }
        }
        if let (Some(before), Some(now)) = (&first.last_modified, &seen.last_modified) {
            if before != now {
                return changed("Last-Modified", &shown(before), &shown(now));
            }
        }
        if let (Some(before), Some(now)) = (first.total, seen.total) {
            if before != now {
                return changed("the file size", &before, &now);
            }
        }
        Ok(())
    }

    pub(super) fn check_total(&mut self, total: u64) -> std::result::Result<(), Fault> {
        let mismatch = |message: String| Err(Fault::Fatal(crate::err!(SizeMismatch, "{message}")));
        let wanted = self.wanted()?;
        match self.size {
            Some(size) if self.base == 0 && total != size => mismatch(format!(
                "the file on the server has {total} bytes, the payload {size}"
            )),
            Some(size) if self.base.checked_add(size).map_or(true, |end| total < end) => {
                mismatch(format!(
                    "the file on the server has {total} bytes, the payload needs {size} bytes from {}",
                    self.base
                ))
            }
            Some(_) => Ok(()),
            None if total < wanted => mismatch(format!(
                "the file on the server has {total} bytes, the download starts at {wanted}"
            )),
            None => {
                // total >= base + pos >= base
                self.size = Some(total - self.base);
                Ok(())
            }
        }
    }
}

/// What a response means for the download.
pub(super) enum Answer {
    /// The body holds payload bytes, framed so.
    Body(Framing),
    End,
    Redirect(HttpUrl),
}

fn check_encoding(head: &Head) -> std::result::Result<(), Fault> {
    match &head.encoding {
        Some(encoding) => Err(protocol(format!(
            "the server sent the payload with Content-Encoding {}, not as its bytes",
            shown(encoding)
        ))),
        None => Ok(()),
    }
}

/// ETags compared weakly: a `W/` prefix alone does not make a different file.
pub(super) fn weak(etag: &str) -> &str {
    etag.strip_prefix("W/").unwrap_or(etag)
}
