//! PEM (RFC 7468) reading and writing: `-----BEGIN LABEL-----`, base64 lines,
//! `-----END LABEL-----`. Our own, over the `base64` crate, because AOSP has no `pem` crate.
//! RFC 1421 header lines (`Proc-Type: ...`) inside a block are skipped; text outside blocks
//! is ignored.

use base64::Engine as _;

/// One PEM block: its label and decoded contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The label, e.g. `CERTIFICATE` or `PUBLIC KEY`.
    pub tag: String,
    /// The DER (or other) bytes the base64 text encodes.
    pub contents: Vec<u8>,
}

/// Every block in `text`, in order. A block that does not end, ends with another label, or
/// whose base64 does not decode is an error.
pub fn parse_many(text: &[u8]) -> Result<Vec<Block>, String> {
    let text = std::str::from_utf8(text).map_err(|_| "PEM text is not UTF-8".to_string())?;
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(tag) = label(line.trim(), "BEGIN") else {
            continue;
        };
        let mut body = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if let Some(end) = label(line, "END") {
                if end != tag {
                    return Err(format!("BEGIN {tag} ends with END {end}"));
                }
                ended = true;
                break;
            }
            if !line.contains(':') {
                body.push_str(line);
            }
        }
        if !ended {
            return Err(format!("BEGIN {tag} has no END line"));
        }
        let contents = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("{tag}: bad base64: {e}"))?;
        blocks.push(Block {
            tag: tag.to_string(),
            contents,
        });
    }
    Ok(blocks)
}

/// `-----BEGIN tag-----`, `contents` in base64 lines of 64 characters, `-----END tag-----`,
/// each line ending with LF.
pub fn encode(tag: &str, contents: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(contents);
    let mut out = format!("-----BEGIN {tag}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {tag}-----\n"));
    out
}

/// The label of a `-----BEGIN X-----` / `-----END X-----` line (`kind` is BEGIN or END).
fn label<'a>(line: &'a str, kind: &str) -> Option<&'a str> {
    line.strip_prefix("-----")?
        .strip_prefix(kind)?
        .strip_prefix(' ')?
        .strip_suffix("-----")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_skips_text_and_headers() {
        let data: Vec<u8> = (0..=255).collect();
        let text = format!("junk\n{}tail\n", encode("PUBLIC KEY", &data));
        assert!(text.lines().nth(2).is_some_and(|l| l.len() == 64));
        let blocks = parse_many(text.as_bytes()).unwrap();
        assert_eq!(
            blocks,
            vec![Block {
                tag: "PUBLIC KEY".into(),
                contents: data
            }]
        );

        let crlf = "-----BEGIN X-----\r\nProc-Type: 4,ENCRYPTED\r\nAAEC\r\n-----END X-----\r\n";
        assert_eq!(
            parse_many(crlf.as_bytes()).unwrap()[0].contents,
            vec![0, 1, 2]
        );
        assert!(parse_many(b"nothing here").unwrap().is_empty());
    }

    #[test]
    fn refuses_broken_blocks() {
        for (text, says) in [
            ("-----BEGIN A-----\nAAAA\n", "no END"),
            (
                "-----BEGIN A-----\nAAAA\n-----END B-----\n",
                "ends with END B",
            ),
            ("-----BEGIN A-----\n!!!!\n-----END A-----\n", "bad base64"),
        ] {
            let e = parse_many(text.as_bytes()).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
