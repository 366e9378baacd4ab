//! The CLI's one progress bar: bytes done of a total, with rate and time left, labelled with
//! the stage or state (right-aligned in `label_width` columns).

use indicatif::{ProgressBar, ProgressStyle};

pub fn new(label_width: usize) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg:>{label_width}}} [{{bar:40}}] {{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}
