//! The rollout progress chart: an SVG drawn on the server (no script in the page). Devices
//! offered, installed and failed (cumulative) on the left axis, the rollout percentage as a
//! step line on the right axis.

use std::fmt::Write;

use crate::db::Timeline;

const W: i64 = 560;
const H: i64 = 200;
const LEFT: i64 = 44;
const RIGHT: i64 = 40;
const TOP: i64 = 14;
const BOTTOM: i64 = 34;

/// Cumulative totals at buckets 0..=last from per-bucket counts.
fn cumulative(counts: &[(i64, i64)], last: i64) -> Vec<i64> {
    let mut out = Vec::new();
    let mut total = 0;
    let mut it = counts.iter().peekable();
    for b in 0..=last {
        while let Some(&&(bucket, n)) = it.peek() {
            if bucket > b {
                break;
            }
            total += n;
            it.next();
        }
        out.push(total);
    }
    out
}

/// "YYYY-MM-DD HH:MM" (UTC) for unix seconds.
pub fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

pub fn svg(offer_id: &str, tl: &Timeline, now: i64) -> String {
    let last = ((now - tl.start) / tl.step).max(1);
    let offered = cumulative(&tl.offered, last);
    let installed = cumulative(&tl.installed, last);
    let failed = cumulative(&tl.failed, last);
    let ymax = offered
        .iter()
        .chain(&installed)
        .chain(&failed)
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let x = |b: i64| LEFT + b * pw / last;
    let y = |v: i64| TOP + ph - v * ph / ymax;
    let yp = |p: i64| TOP + ph - p * ph / 100;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" data-chart="{offer_id}" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>"##
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" text-anchor="end">{ymax}</text><text x="{}" y="{}" text-anchor="end">0</text>"##,
        LEFT - 4,
        TOP + 4,
        LEFT - 4,
        TOP + ph
    );
    let _ = write!(
        s,
        r##"<text x="{}" y="{}" fill="#888">100%</text><text x="{}" y="{}" fill="#888">0%</text>"##,
        W - RIGHT + 4,
        TOP + 4,
        W - RIGHT + 4,
        TOP + ph
    );
    let _ = write!(
        s,
        r##"<text x="{LEFT}" y="{}">{}</text><text x="{}" y="{}" text-anchor="end">{} UTC</text>"##,
        H - BOTTOM + 14,
        utc(tl.start),
        W - RIGHT,
        H - BOTTOM + 14,
        utc(now)
    );
    // Percentage: a step line through the history, held until now.
    let mut pts = String::new();
    let mut prev: Option<i64> = None;
    for &(at, p) in &tl.percent {
        let b = ((at - tl.start) / tl.step).clamp(0, last);
        if let Some(pp) = prev {
            let _ = write!(pts, "{},{} ", x(b), yp(pp));
        }
        let _ = write!(pts, "{},{} ", x(b), yp(p));
        prev = Some(p);
    }
    if let Some(pp) = prev {
        let _ = write!(pts, "{},{}", x(last), yp(pp));
    }
    let _ = write!(
        s,
        r##"<polyline data-series="percent" points="{pts}" fill="none" stroke="#999" stroke-dasharray="4 3" stroke-width="1.5"/>"##
    );
    for (name, series, color) in [
        ("offered", &offered, "#3b6fd8"),
        ("installed", &installed, "#2a9d4a"),
        ("failed", &failed, "#d33c3c"),
    ] {
        let pts: Vec<String> = series
            .iter()
            .enumerate()
            .map(|(b, &v)| format!("{},{}", x(b as i64), y(v)))
            .collect();
        let _ = write!(
            s,
            r#"<polyline data-series="{name}" data-last="{}" points="{}" fill="none" stroke="{color}" stroke-width="2"/>"#,
            series.last().copied().unwrap_or(0),
            pts.join(" ")
        );
    }
    let mut lx = LEFT;
    for (name, color) in [
        ("offered", "#3b6fd8"),
        ("installed", "#2a9d4a"),
        ("ever failed", "#d33c3c"),
        ("rollout %", "#999"),
    ] {
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{name}</text>"##,
            H - 14,
            lx + 14,
            H - 5
        );
        lx += 110;
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_sums_and_dates() {
        assert_eq!(cumulative(&[(0, 2), (2, 3)], 3), vec![2, 2, 5, 5]);
        assert_eq!(utc(0), "1970-01-01 00:00");
        assert_eq!(utc(1_733_450_000), "2024-12-06 01:53");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn chart_draws_each_series_to_its_total() {
        let tl = Timeline {
            start: 1000,
            step: 10,
            offered: vec![(0, 5), (3, 5)],
            installed: vec![(4, 7)],
            failed: vec![(5, 1)],
            percent: vec![(1000, 10), (1030, 50)],
        };
        let s = svg("o", &tl, 1100);
        assert!(s.contains(r#"data-series="offered" data-last="10""#));
        assert!(s.contains(r#"data-series="installed" data-last="7""#));
        assert!(s.contains(r#"data-series="failed" data-last="1""#));
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
    }
}
