//! The postinstall program's status descriptor, as update_engine reads it (no I/O): bytes in,
//! `global_progress <fraction>` lines out, and the combined progress of all programs.

/// A line longer than this is dropped: a program cannot make the service buffer without end.
pub const MAX_LINE: usize = 4096;

/// Splits what the program writes to its status descriptor into lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
    /// The current line outgrew [`MAX_LINE`]; its rest is skipped up to the next newline.
    skipping: bool,
}

impl LineBuffer {
    /// Feeds bytes; returns the complete lines they finish (without the newline).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let (body, complete) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            if !self.skipping {
                if self.pending.len() + body.len() > MAX_LINE {
                    self.pending.clear();
                    self.skipping = true;
                } else {
                    self.pending.extend_from_slice(body);
                }
            }
            if complete {
                if !self.skipping {
                    lines.push(String::from_utf8_lossy(&self.pending).into_owned());
                }
                self.pending.clear();
                self.skipping = false;
            }
        }
        lines
    }
}

/// The fraction a status line reports, as update_engine's
/// `sscanf(line, "global_progress %lf")` reads it: the line starts with `global_progress`,
/// then optional white space and a number (what follows the number is ignored). NaN is not
/// progress (`None`); anything else is clamped to 0..=1, infinities to 0, as
/// `ReportProgress` does.
pub fn parse_line(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("global_progress")?;
    let value = leading_number(rest.trim_start())?;
    if value.is_nan() {
        return None;
    }
    Some(if !value.is_finite() || value < 0.0 {
        0.0
    } else {
        value.min(1.0)
    })
}

/// The longest prefix of `text` that is a decimal floating-point number (or `inf`,
/// `infinity`, `nan`, any case), as `strtod` takes it.
fn leading_number(text: &str) -> Option<f64> {
    let unsigned = text.trim_start_matches(['+', '-']);
    let sign_len = text.len() - unsigned.len();
    if sign_len > 1 {
        return None;
    }
    let lower = unsigned.get(..8).unwrap_or(unsigned).to_ascii_lowercase();
    for word in ["infinity", "inf", "nan"] {
        if lower.starts_with(word) {
            let value = if word == "nan" {
                f64::NAN
            } else {
                f64::INFINITY
            };
            return Some(if text.starts_with('-') { -value } else { value });
        }
    }
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || ".eE+-".contains(c)))
        .unwrap_or(text.len());
    (1..=end).rev().find_map(|n| text[..n].parse::<f64>().ok())
}

/// The combined progress of a run's programs: each program it runs weighs the same, as in
/// update_engine (`partition_weight_`), so the whole goes from 0 to 1 across them.
#[derive(Clone, Copy, Debug)]
pub struct Weights {
    total: u32,
    finished: u32,
}

impl Weights {
    /// For `total` programs to run.
    pub fn new(total: u32) -> Self {
        Weights { total, finished: 0 }
    }

    /// The overall fraction when the current program reports `fraction` (0..=1).
    pub fn overall(&self, fraction: f64) -> f64 {
        if self.total == 0 {
            return 1.0;
        }
        ((f64::from(self.finished) + fraction.clamp(0.0, 1.0)) / f64::from(self.total)).min(1.0)
    }

    /// The current program ended; the next starts at 0.
    pub fn finish_one(&mut self) {
        self.finished = self.finished.saturating_add(1).min(self.total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_read_as_sscanf_does() {
        let cases: &[(&str, Option<f64>)] = &[
            ("global_progress 0.5", Some(0.5)),
            ("global_progress\t0.25\r", Some(0.25)),
            ("global_progress0.75", Some(0.75)),
            ("global_progress 1", Some(1.0)),
            ("global_progress 1.5", Some(1.0)),
            ("global_progress -0.5", Some(0.0)),
            ("global_progress 5e-1 done", Some(0.5)),
            ("global_progress .125", Some(0.125)),
            ("global_progress 1e", Some(1.0)),
            ("global_progress inf", Some(0.0)),
            ("global_progress nan", None),
            ("global_progress", None),
            ("global_progress x", None),
            ("global_progress --1", None),
            (" global_progress 0.5", None),
            ("Global_progress 0.5", None),
            ("progress 0.5", None),
        ];
        for &(line, want) in cases {
            assert_eq!(parse_line(line), want, "{line:?}");
        }
    }

    #[test]
    fn lines_are_split_across_reads_and_bounded() {
        let mut buf = LineBuffer::default();
        assert!(buf.push(b"global_pro").is_empty());
        assert_eq!(
            buf.push(b"gress 0.1\nglobal_progress 0.2\nxy"),
            ["global_progress 0.1", "global_progress 0.2"]
        );
        assert_eq!(buf.push(b"z\n"), ["xyz"]);
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(buf.push(&long).is_empty());
        assert!(buf.push(b"still the long line\nglobal_progress 1\n") == ["global_progress 1"]);
    }

    #[test]
    fn weights_spread_the_programs_over_the_whole() {
        let mut w = Weights::new(2);
        assert_eq!(w.overall(0.0), 0.0);
        assert_eq!(w.overall(0.5), 0.25);
        w.finish_one();
        assert_eq!(w.overall(0.0), 0.5);
        assert_eq!(w.overall(2.0), 1.0);
        w.finish_one();
        w.finish_one();
        assert_eq!(w.overall(0.0), 1.0);
        assert_eq!(Weights::new(0).overall(0.3), 1.0);
    }
}
