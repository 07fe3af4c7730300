//! Time units (Unix milliseconds) shared by the whole simulator, and the default start of a run.

/// 2026-01-01T00:00:00Z in Unix milliseconds, the default start of day 0.
pub const DEFAULT_START_MS: i64 = 1_767_225_600_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 3_600_000;
/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
