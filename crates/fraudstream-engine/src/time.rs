//! Event-time units (milliseconds since the Unix epoch), defined once.

/// One minute.
pub const MINUTE_MS: i64 = 60_000;
/// One hour.
pub const HOUR_MS: i64 = 3_600_000;
/// One day.
pub const DAY_MS: i64 = 86_400_000;

/// A duration for people: `"90 ms"`, `"42.0 s"`, `"3.5 h"`, `"356000.0 d"`.
pub fn human(ms: i64) -> String {
    let a = ms.unsigned_abs() as f64;
    let sign = if ms < 0 { "-" } else { "" };
    match a {
        a if a < 1_000.0 => format!("{ms} ms"),
        a if a < MINUTE_MS as f64 => format!("{sign}{:.1} s", a / 1_000.0),
        a if a < HOUR_MS as f64 => format!("{sign}{:.1} min", a / MINUTE_MS as f64),
        a if a < DAY_MS as f64 => format!("{sign}{:.1} h", a / HOUR_MS as f64),
        a => format!("{sign}{:.1} d", a / DAY_MS as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_the_largest_fitting_unit() {
        assert_eq!(human(90), "90 ms");
        assert_eq!(human(42_000), "42.0 s");
        assert_eq!(human(-3 * HOUR_MS - HOUR_MS / 2), "-3.5 h");
        assert_eq!(human(7 * DAY_MS), "7.0 d");
        assert!(human(i64::MAX).ends_with(" d"));
    }
}
