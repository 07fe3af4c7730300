//! Event-time units (milliseconds since the Unix epoch), defined once.

/// One minute.
pub const MINUTE_MS: i64 = 60_000;
/// One hour.
pub const HOUR_MS: i64 = 3_600_000;
/// One day.
pub const DAY_MS: i64 = 86_400_000;
