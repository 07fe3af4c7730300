//! Record decoding shared by CSV and JSONL: file columns are mapped to event
//! fields once (by header or key name), values are borrowed from the input
//! where possible, and every failure becomes a [`Reject`] with a reason.

use crate::config::{TimestampFormat, LABEL_FIELDS, TRANSACTION_FIELDS};
use compact_str::{format_compact, CompactString};
use fraudstream_engine::engine::Refusal;
use fraudstream_engine::event::{DeadLetter, Event, Label, RejectKind, Transaction, TxId};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Most slots a record has: the transaction fields plus a label column.
pub const MAX_SLOTS: usize = TRANSACTION_FIELDS.len() + 1;
/// Longest identifier accepted.
pub const MAX_ID_BYTES: usize = 128;
/// What an amount must be, as a rejection says it. (How large an amount may
/// be is the engine's `max_amount`, checked where every source meets.)
const AMOUNT_RANGE: &str = "a finite amount, 0 or more";
/// Timestamps must fall in [1970, 3000).
pub const MAX_TS_MS: i64 = 32_503_680_000_000;

/// A record that cannot be accepted, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Reject {
    /// Kind, for counting.
    pub kind: RejectKind,
    /// Human-readable reason.
    pub reason: String,
}

impl Reject {
    /// A reject of `kind` with `reason`.
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Reject {
            kind,
            reason: reason.into(),
        }
    }

    /// `Oversized` when a record of `len` bytes is over `max_bytes`.
    pub fn over_size(len: usize, max_bytes: usize) -> Result<(), Reject> {
        if len > max_bytes {
            return Err(Reject::new(
                RejectKind::Oversized,
                format!("record of {len} bytes, more than max_record_bytes = {max_bytes}"),
            ));
        }
        Ok(())
    }
}

/// A value as it appeared in the input.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw<'a> {
    /// A string (CSV cells are always strings).
    Str(Cow<'a, str>),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// JSON null.
    Null,
    /// An array or object.
    Nested,
}

impl Raw<'_> {
    fn describe(&self) -> String {
        match self {
            Raw::Str(s) => format!("\"{}\"", truncate(s, 40)),
            Raw::Int(i) => i.to_string(),
            Raw::UInt(u) => u.to_string(),
            Raw::Float(f) => f.to_string(),
            Raw::Bool(b) => b.to_string(),
            Raw::Null => "null".into(),
            Raw::Nested => "an array or object".into(),
        }
    }

    /// Empty strings and nulls count as absent.
    fn present(&self) -> bool {
        match self {
            Raw::Str(s) => !s.trim().is_empty(),
            Raw::Null => false,
            _ => true,
        }
    }
}

/// Shorten `s` to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// One record's values by slot.
#[derive(Debug, Default)]
pub struct RawRecord<'a> {
    values: [Option<Raw<'a>>; MAX_SLOTS],
}

impl<'a> RawRecord<'a> {
    /// Forget all values.
    pub fn clear(&mut self) {
        for v in &mut self.values {
            *v = None;
        }
    }

    /// Set slot `i`.
    pub fn set(&mut self, i: usize, v: Raw<'a>) {
        self.values[i] = Some(v);
    }

    fn get(&self, i: usize) -> Option<&Raw<'a>> {
        self.values[i].as_ref().filter(|v| v.present())
    }
}

/// What records a decoder produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Transactions (slot order of [`TRANSACTION_FIELDS`], then the label column).
    Transaction,
    /// Labels (slot order of [`LABEL_FIELDS`]).
    Label,
}

/// The dead letter of an event the engine refused (see
/// `MerchantStage::admit`): its fields as one JSON record in the input
/// schema, so it can be corrected and replayed.
pub fn refused(event: &Event, refusal: Refusal) -> DeadLetter {
    let raw = match event {
        Event::Transaction(t) => serde_json::json!({
            "tx_id": t.tx_id, "ts": t.ts, "card_id": t.card_id.as_str(),
            "merchant_id": t.merchant_id.as_str(), "amount": t.amount,
            "currency": t.currency.as_deref(), "mcc": t.mcc.as_deref(),
            "country": t.country.as_deref(), "channel": t.channel.as_deref(),
            "lat": t.location.map(|l| l.0), "lon": t.location.map(|l| l.1),
        }),
        Event::Label(l) => {
            serde_json::json!({"tx_id": l.tx_id, "ts": l.ts, "is_fraud": l.is_fraud})
        }
    };
    DeadLetter {
        source: "engine".into(),
        line: None,
        kind: refusal.kind,
        reason: refusal.reason,
        raw: raw.to_string(),
    }
}

/// Maps a file's columns to slots and turns raw records into events.
#[derive(Clone, Debug)]
pub struct Decoder {
    kind: RecordKind,
    /// (column name in the file, slot, event field name)
    columns: Vec<(String, usize, &'static str)>,
    timestamp: TimestampFormat,
}

const LABEL_SLOT: usize = TRANSACTION_FIELDS.len();

impl Decoder {
    /// A decoder for `kind` with `fields` mapping event fields to column names;
    /// `label_column`, for transactions, is a column holding a fraud verdict.
    pub fn new(
        kind: RecordKind,
        fields: &std::collections::BTreeMap<String, String>,
        label_column: Option<&str>,
        timestamp: TimestampFormat,
    ) -> Self {
        let names: &[&'static str] = match kind {
            RecordKind::Transaction => &TRANSACTION_FIELDS,
            RecordKind::Label => &LABEL_FIELDS,
        };
        let mut columns: Vec<(String, usize, &'static str)> = names
            .iter()
            .enumerate()
            .map(|(i, &f)| {
                (
                    fields.get(f).cloned().unwrap_or_else(|| f.to_string()),
                    i,
                    f,
                )
            })
            .collect();
        if let (RecordKind::Transaction, Some(c)) = (kind, label_column) {
            columns.push((c.to_string(), LABEL_SLOT, "label"));
        }
        Decoder {
            kind,
            columns,
            timestamp,
        }
    }

    /// Slot of a column name.
    #[inline]
    pub fn slot_of(&self, column: &str) -> Option<usize> {
        self.columns
            .iter()
            .find(|(c, _, _)| c == column)
            .map(|&(_, s, _)| s)
    }

    fn column_of(&self, slot: usize) -> &str {
        self.columns
            .iter()
            .find(|&&(_, s, _)| s == slot)
            .map(|(c, _, _)| c.as_str())
            .unwrap_or("?")
    }

    /// Required columns (field, column) missing from a CSV header.
    pub fn missing_columns<'h>(
        &self,
        header: impl Iterator<Item = &'h str> + Clone,
    ) -> Vec<(&'static str, String)> {
        let required = match self.kind {
            RecordKind::Transaction => 5,
            RecordKind::Label => 3,
        };
        self.columns
            .iter()
            .filter(|&&(_, slot, _)| slot < required || slot == LABEL_SLOT)
            .filter(|(c, _, _)| !header.clone().any(|h| h == c))
            .map(|(c, _, f)| (*f, c.clone()))
            .collect()
    }

    /// Fill `rec` from one JSON object.
    pub fn decode_json<'a>(&self, line: &'a str, rec: &mut RawRecord<'a>) -> Result<(), Reject> {
        rec.clear();
        let mut de = serde_json::Deserializer::from_str(line);
        RecordSeed { dec: self, rec }
            .deserialize(&mut de)
            .and_then(|_| de.end())
            .map_err(|e| Reject::new(RejectKind::Malformed, format!("not a JSON object: {e}")))
    }

    fn missing(&self, slot: usize) -> Reject {
        let field = self
            .columns
            .iter()
            .find(|&&(_, s, _)| s == slot)
            .map(|c| c.2)
            .unwrap_or("?");
        let col = self.column_of(slot);
        if col == field {
            Reject::new(RejectKind::MissingField, format!("missing field {field}"))
        } else {
            Reject::new(
                RejectKind::MissingField,
                format!("missing field {field} (column {col})"),
            )
        }
    }

    fn invalid(&self, slot: usize, what: &str, v: &Raw) -> Reject {
        let col = self.column_of(slot);
        Reject::new(
            RejectKind::InvalidField,
            format!("{col}: expected {what}, found {}", v.describe()),
        )
    }

    fn required<'r, 'a>(&self, rec: &'r RawRecord<'a>, slot: usize) -> Result<&'r Raw<'a>, Reject> {
        rec.get(slot).ok_or_else(|| self.missing(slot))
    }

    fn tx_id(&self, rec: &RawRecord<'_>, slot: usize) -> Result<TxId, Reject> {
        let v = self.required(rec, slot)?;
        match v {
            Raw::UInt(n) => Ok(TxId::Int(*n)),
            Raw::Str(s) if s.len() <= MAX_ID_BYTES => {
                Ok(TxId::Str(CompactString::from(s.as_ref())))
            }
            _ => Err(self.invalid(
                slot,
                "a string or non-negative integer id of at most 128 bytes",
                v,
            )),
        }
    }

    fn id(&self, rec: &RawRecord<'_>, slot: usize) -> Result<CompactString, Reject> {
        let v = self.required(rec, slot)?;
        match v {
            Raw::Str(s) if s.len() <= MAX_ID_BYTES => Ok(CompactString::from(s.as_ref())),
            Raw::UInt(n) => Ok(format_compact!("{n}")),
            Raw::Int(n) => Ok(format_compact!("{n}")),
            _ => Err(self.invalid(slot, "a string or integer id of at most 128 bytes", v)),
        }
    }

    fn opt_text(&self, rec: &RawRecord<'_>, slot: usize) -> Result<Option<CompactString>, Reject> {
        match rec.get(slot) {
            None => Ok(None),
            Some(Raw::Str(s)) if s.len() <= MAX_ID_BYTES => {
                Ok(Some(CompactString::from(s.as_ref())))
            }
            Some(Raw::UInt(n)) => Ok(Some(format_compact!("{n}"))),
            Some(Raw::Int(n)) => Ok(Some(format_compact!("{n}"))),
            Some(v) => Err(self.invalid(slot, "a short string", v)),
        }
    }

    fn number(&self, v: &Raw) -> Option<f64> {
        match v {
            Raw::Float(f) => Some(*f),
            Raw::UInt(u) => Some(*u as f64),
            Raw::Int(i) => Some(*i as f64),
            Raw::Str(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
    }

    fn timestamp(&self, rec: &RawRecord<'_>, slot: usize) -> Result<i64, Reject> {
        let v = self.required(rec, slot)?;
        let col = self.column_of(slot);
        let ms = parse_timestamp(v, &self.timestamp).map_err(|why| {
            Reject::new(
                RejectKind::BadTimestamp,
                format!("{col}: {why}, found {}", v.describe()),
            )
        })?;
        if !(0..MAX_TS_MS).contains(&ms) {
            return Err(Reject::new(
                RejectKind::BadTimestamp,
                format!("{col}: time outside 1970..3000, found {}", v.describe()),
            ));
        }
        Ok(ms)
    }

    /// Build a transaction (and, with a label column, its verdict) from `rec`.
    pub fn transaction(
        &self,
        rec: &RawRecord<'_>,
    ) -> Result<(Transaction, Option<Result<bool, Reject>>), Reject> {
        debug_assert_eq!(self.kind, RecordKind::Transaction);
        let tx_id = self.tx_id(rec, 0)?;
        let ts = self.timestamp(rec, 1)?;
        let card_id = self.id(rec, 2)?;
        let merchant_id = self.id(rec, 3)?;
        let av = self.required(rec, 4)?;
        let amount = match self.number(av) {
            // Zero is a real amount: account verifications and card-testing probes.
            Some(a) if a.is_finite() && a >= 0.0 => a,
            _ => return Err(self.invalid(4, AMOUNT_RANGE, av)),
        };
        let currency = self.opt_text(rec, 5)?;
        let mcc = self.opt_text(rec, 6)?;
        let country = self.opt_text(rec, 7)?;
        let channel = self.opt_text(rec, 8)?;
        let coord = |slot: usize, limit: f64| -> Result<Option<f64>, Reject> {
            match rec.get(slot) {
                None => Ok(None),
                Some(v) => match self.number(v) {
                    Some(x) if x.is_finite() && x.abs() <= limit => Ok(Some(x)),
                    _ => Err(self.invalid(slot, &format!("a coordinate within ±{limit}"), v)),
                },
            }
        };
        let location = match (coord(9, 90.0)?, coord(10, 180.0)?) {
            (Some(a), Some(b)) => Some((a, b)),
            (None, None) => None,
            (Some(_), None) => return Err(self.missing(10)),
            (None, Some(_)) => return Err(self.missing(9)),
        };
        let label = self
            .columns
            .iter()
            .any(|c| c.1 == LABEL_SLOT)
            .then(|| self.verdict(rec, LABEL_SLOT));
        Ok((
            Transaction {
                tx_id,
                ts,
                card_id,
                merchant_id,
                amount,
                currency,
                mcc,
                country,
                channel,
                location,
            },
            label,
        ))
    }

    fn verdict(&self, rec: &RawRecord<'_>, slot: usize) -> Result<bool, Reject> {
        let v = self.required(rec, slot)?;
        let b = match v {
            Raw::Bool(b) => Some(*b),
            Raw::UInt(0) => Some(false),
            Raw::UInt(1) => Some(true),
            Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" | "yes" | "y" => Some(true),
                "0" | "false" | "f" | "no" | "n" => Some(false),
                _ => None,
            },
            _ => None,
        };
        b.ok_or_else(|| self.invalid(slot, "true/false or 1/0", v))
    }

    /// Build a label from `rec`.
    pub fn label(&self, rec: &RawRecord<'_>) -> Result<Label, Reject> {
        debug_assert_eq!(self.kind, RecordKind::Label);
        Ok(Label {
            tx_id: self.tx_id(rec, 0)?,
            ts: self.timestamp(rec, 1)?,
            is_fraud: self.verdict(rec, 2)?,
        })
    }
}

/// Parse a timestamp value into epoch ms.
pub fn parse_timestamp(v: &Raw, fmt: &TimestampFormat) -> Result<i64, &'static str> {
    let int_ms = |v: &Raw, scale: f64| -> Option<i64> {
        let x = match v {
            Raw::UInt(u) => *u as f64,
            Raw::Int(i) => *i as f64,
            Raw::Float(f) => *f,
            Raw::Str(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        let ms = x * scale;
        ms.is_finite().then(|| ms.round() as i64)
    };
    match fmt {
        TimestampFormat::EpochMs => int_ms(v, 1.0).ok_or("expected epoch milliseconds"),
        TimestampFormat::EpochS => int_ms(v, 1000.0).ok_or("expected epoch seconds"),
        TimestampFormat::Rfc3339 => match v {
            Raw::Str(s) => parse_rfc3339(s).ok_or("expected an RFC 3339 time"),
            _ => Err("expected an RFC 3339 time"),
        },
        TimestampFormat::Pattern(p) => match v {
            Raw::Str(s) => {
                parse_pattern(s.trim(), p).ok_or("time does not match the configured pattern")
            }
            _ => Err("expected a time string"),
        },
        TimestampFormat::Auto => match v {
            Raw::Str(s) => {
                let s = s.trim();
                if s.bytes().all(|b| b.is_ascii_digit()) {
                    s.parse::<i64>().map_err(|_| "expected a time")
                } else {
                    parse_rfc3339(s)
                        .or_else(|| parse_pattern(s, "%Y-%m-%d %H:%M:%S%.f"))
                        .ok_or("expected epoch ms, RFC 3339 or YYYY-MM-DD HH:MM:SS")
                }
            }
            _ => int_ms(v, 1.0).ok_or("expected epoch ms, RFC 3339 or YYYY-MM-DD HH:MM:SS"),
        },
    }
}

fn parse_pattern(s: &str, p: &str) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime};
    NaiveDateTime::parse_from_str(s, p)
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(s, p)
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .map(|dt| dt.and_utc().timestamp_millis())
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// RFC 3339 to epoch ms. A fast path reads `YYYY-MM-DDTHH:MM:SS[.fff]Z`
/// without allocation; other valid forms (offsets, lower-case) go to chrono.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as i64;
        }
        Some(n)
    };
    let fast = (|| {
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
        {
            return None;
        }
        let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
        let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut i = 19;
        let mut ms = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 3 {
                    ms = ms * 10 + (b[i] - b'0') as i64;
                }
                i += 1;
            }
            let n = i - start;
            if n == 0 {
                return None;
            }
            for _ in n..3 {
                ms *= 10;
            }
        }
        if i + 1 != b.len() || b[i] != b'Z' {
            return None;
        }
        // Reject impossible dates such as 02-30 (chrono would too).
        if d > days_in_month(y, mo) {
            return None;
        }
        Some(((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
    })();
    fast.or_else(|| {
        chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|dt| dt.timestamp_millis())
    })
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Format epoch ms as `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn format_rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

struct RecordSeed<'d, 'r, 'a> {
    dec: &'d Decoder,
    rec: &'r mut RawRecord<'a>,
}

impl<'de, 'd, 'r> DeserializeSeed<'de> for RecordSeed<'d, 'r, 'de> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'd, 'r> Visitor<'de> for RecordSeed<'d, 'r, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.dec.slot_of(&key) {
                Some(slot) => {
                    let v = map.next_value_seed(RawSeed)?;
                    self.rec.set(slot, v);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct KeySeed;
impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}
impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

struct RawSeed;
impl<'de> DeserializeSeed<'de> for RawSeed {
    type Value = Raw<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}
impl<'de> Visitor<'de> for RawSeed {
    type Value = Raw<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Raw::Str(Cow::Owned(v.to_string())))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Raw::UInt(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(if v >= 0 {
            Raw::UInt(v as u64)
        } else {
            Raw::Int(v)
        })
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Raw::Float(v))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Raw::Null)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Raw::Nested)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Raw::Nested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn tx_decoder(fields: &[(&str, &str)]) -> Decoder {
        let map: BTreeMap<String, String> = fields
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Decoder::new(RecordKind::Transaction, &map, None, TimestampFormat::Auto)
    }

    fn decode(d: &Decoder, line: &str) -> Result<Transaction, Reject> {
        let mut rec = RawRecord::default();
        d.decode_json(line, &mut rec)?;
        d.transaction(&rec).map(|(t, _)| t)
    }

    #[test]
    fn json_with_mapping_and_types_kept() {
        let d = tx_decoder(&[("card_id", "CUSTOMER_ID")]);
        let t = decode(
            &d,
            r#"{"tx_id": 12, "ts": "2026-01-01T00:00:01.5Z", "CUSTOMER_ID": "c1", "merchant_id": 7, "amount": "12.5", "mcc": 5411, "lat": 1.0, "lon": 2.0, "extra": [1,2]}"#,
        )
        .unwrap();
        assert_eq!(t.tx_id, TxId::Int(12));
        assert_eq!(t.ts, 1_767_225_601_500);
        assert_eq!(t.card_id, "c1");
        assert_eq!(t.merchant_id, "7");
        assert_eq!(t.amount, 12.5);
        assert_eq!(t.mcc.as_deref(), Some("5411"));
        assert_eq!(t.location, Some((1.0, 2.0)));
    }

    #[test]
    fn zero_amounts_are_transactions() {
        let d = tx_decoder(&[]);
        let t = decode(
            &d,
            r#"{"tx_id":"v","ts":1000,"card_id":"c","merchant_id":"m","amount":0}"#,
        )
        .unwrap();
        assert_eq!(t.amount, 0.0);
    }

    #[test]
    fn every_kind_of_bad_record_has_its_reason() {
        let d = tx_decoder(&[]);
        let ok = r#""tx_id":"a","ts":1000,"card_id":"c","merchant_id":"m""#;
        let cases = [
            ("not json", RejectKind::Malformed),
            ("[1,2]", RejectKind::Malformed),
            (
                r#"{"tx_id":"a","ts":1000,"card_id":"c","merchant_id":"m"}"#,
                RejectKind::MissingField,
            ),
            (&format!("{{{ok},\"amount\":-1}}"), RejectKind::InvalidField),
            (
                &format!("{{{ok},\"amount\":\"NaN\"}}"),
                RejectKind::InvalidField,
            ),
            (
                &format!("{{{ok},\"amount\":\"inf\"}}"),
                RejectKind::InvalidField,
            ),
            (&format!("{{{ok},\"amount\":1e400}}"), RejectKind::Malformed),
            (
                &format!("{{{ok},\"amount\":1,\"lat\":95,\"lon\":0}}"),
                RejectKind::InvalidField,
            ),
            (
                &format!("{{{ok},\"amount\":1,\"lat\":5}}"),
                RejectKind::MissingField,
            ),
            (
                r#"{"tx_id":"a","ts":"yesterday","card_id":"c","merchant_id":"m","amount":1}"#,
                RejectKind::BadTimestamp,
            ),
            (
                r#"{"tx_id":"a","ts":-5,"card_id":"c","merchant_id":"m","amount":1}"#,
                RejectKind::BadTimestamp,
            ),
            (
                r#"{"tx_id":1.5,"ts":5,"card_id":"c","merchant_id":"m","amount":1}"#,
                RejectKind::InvalidField,
            ),
            (
                r#"{"tx_id":"a","ts":5,"card_id":"","merchant_id":"m","amount":1}"#,
                RejectKind::MissingField,
            ),
        ];
        for (line, kind) in cases {
            let err = decode(&d, line).unwrap_err();
            assert_eq!(err.kind, kind, "{line}: {}", err.reason);
            assert!(!err.reason.is_empty());
        }
        let err = decode(
            &d,
            r#"{"tx_id":"a","ts":1000,"card_id":"c","merchant_id":"m"}"#,
        )
        .unwrap_err();
        assert_eq!(err.reason, "missing field amount");
    }

    #[test]
    fn label_values_in_many_spellings() {
        let d = Decoder::new(
            RecordKind::Label,
            &BTreeMap::new(),
            None,
            TimestampFormat::EpochMs,
        );
        for (v, want) in [
            ("true", true),
            ("0", false),
            ("1", true),
            ("\"yes\"", true),
            ("\"F\"", false),
        ] {
            let line = format!(r#"{{"tx_id":"x","ts":5,"is_fraud":{v}}}"#);
            let mut rec = RawRecord::default();
            d.decode_json(&line, &mut rec).unwrap();
            assert_eq!(d.label(&rec).unwrap().is_fraud, want, "{v}");
        }
        let mut rec = RawRecord::default();
        d.decode_json(r#"{"tx_id":"x","ts":5,"is_fraud":"maybe"}"#, &mut rec)
            .unwrap();
        assert_eq!(d.label(&rec).unwrap_err().kind, RejectKind::InvalidField);
    }

    #[test]
    fn timestamp_formats() {
        let s = |x: &str| Raw::Str(Cow::Owned(x.to_string()));
        assert_eq!(
            parse_timestamp(&s("1970-01-02T00:00:00Z"), &TimestampFormat::Rfc3339),
            Ok(86_400_000)
        );
        assert_eq!(
            parse_timestamp(&s("1970-01-01T01:00:00+01:00"), &TimestampFormat::Rfc3339),
            Ok(0)
        );
        assert_eq!(
            parse_timestamp(&Raw::Float(1.5), &TimestampFormat::EpochS),
            Ok(1500)
        );
        assert_eq!(
            parse_timestamp(
                &s("2018-04-01 00:00:31"),
                &TimestampFormat::Pattern("%Y-%m-%d %H:%M:%S".into())
            ),
            Ok(1_522_540_831_000)
        );
        assert_eq!(
            parse_timestamp(&s("2018-04-01 00:00:31"), &TimestampFormat::Auto),
            Ok(1_522_540_831_000)
        );
        assert!(parse_timestamp(&s("2026-02-30T00:00:00Z"), &TimestampFormat::Rfc3339).is_err());
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips(ms in 0i64..MAX_TS_MS) {
            prop_assert_eq!(parse_rfc3339(&format_rfc3339(ms)), Some(ms));
        }

        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,200}") {
            let d = tx_decoder(&[]);
            let _ = decode(&d, &line);
        }
    }
}
