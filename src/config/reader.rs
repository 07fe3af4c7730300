//! Typed reading of a TOML table that records every problem instead of
//! stopping at the first: each accessor returns a usable default on error and
//! notes the file, the key and what was expected. Unknown keys are reported
//! by [`Section::finish`] with the keys that are known there.

use compact_str::CompactString;
use std::cell::RefCell;
use std::fmt;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// File the problem is in.
    pub file: String,
    /// Dotted key, e.g. `sinks.scores.format`.
    pub key: String,
    /// What was expected there.
    pub expected: String,
    /// What was found, when something was.
    pub found: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: expected {}", self.file, self.key, self.expected)?;
        if let Some(found) = &self.found {
            write!(f, ", found {found}")?;
        }
        Ok(())
    }
}

/// Every problem found in one or more files.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  - {e}")?;
        }
        Ok(())
    }
}

/// Collects errors for one file.
pub struct Errors {
    file: String,
    list: RefCell<Vec<ConfigError>>,
}

impl Errors {
    /// For `file` (as it will be shown to the user).
    pub fn new(file: &str) -> Self {
        Errors {
            file: file.to_string(),
            list: RefCell::new(Vec::new()),
        }
    }

    /// Note a problem at `key`.
    pub fn push(&self, key: &str, expected: impl Into<String>, found: Option<String>) {
        self.list.borrow_mut().push(ConfigError {
            file: self.file.clone(),
            key: key.to_string(),
            expected: expected.into(),
            found,
        });
    }

    /// Take in the problems of another file (one this file names).
    pub fn extend(&self, other: Vec<ConfigError>) {
        self.list.borrow_mut().extend(other);
    }

    /// True when nothing went wrong so far.
    pub fn is_empty(&self) -> bool {
        self.list.borrow().is_empty()
    }

    /// The problems, in the order found.
    pub fn into_vec(self) -> Vec<ConfigError> {
        self.list.into_inner()
    }
}

/// Short description of a TOML value for error messages.
pub fn describe(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("\"{s}\""),
        toml::Value::Integer(i) => format!("{i}"),
        toml::Value::Float(f) => format!("{f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        toml::Value::Datetime(d) => format!("{d}"),
        toml::Value::Array(_) => "an array".into(),
        toml::Value::Table(_) => "a table".into(),
    }
}

/// Parse a duration such as `500ms`, `30s`, `10m`, `1h`, `7d`, `2w` into ms.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1.0,
        "s" => 1e3,
        "m" | "min" => 60e3,
        "h" => 3600e3,
        "d" => 86_400e3,
        "w" => 7.0 * 86_400e3,
        _ => return None,
    };
    let ms = n * unit_ms;
    (ms.is_finite() && (0.0..9.2e18).contains(&ms)).then_some(ms.round() as i64)
}

/// A table being read; absent tables read as empty (every key defaulted).
pub struct Section<'a> {
    path: String,
    table: Option<&'a toml::Table>,
    errors: &'a Errors,
    known: RefCell<Vec<String>>,
}

impl<'a> Section<'a> {
    /// The root table of a file.
    pub fn root(table: &'a toml::Table, errors: &'a Errors) -> Self {
        Section {
            path: String::new(),
            table: Some(table),
            errors,
            known: RefCell::new(Vec::new()),
        }
    }

    /// Dotted key of `key` in this section.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// This section's own dotted path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Where errors go.
    pub fn errors(&self) -> &'a Errors {
        self.errors
    }

    /// Note a problem at `key` of this section.
    pub fn error(&self, key: &str, expected: impl Into<String>, found: Option<String>) {
        self.errors.push(&self.key_path(key), expected, found);
    }

    /// Whether the table exists in the file.
    pub fn present(&self) -> bool {
        self.table.is_some()
    }

    /// The raw value of `key`, marking it known.
    pub fn value(&self, key: &str) -> Option<&'a toml::Value> {
        self.known.borrow_mut().push(key.to_string());
        self.table.and_then(|t| t.get(key))
    }

    /// Whether `key` is set.
    pub fn has(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    /// A sub-table (empty if absent; an error if `key` holds something else).
    pub fn section(&self, key: &str) -> Section<'a> {
        let table = match self.value(key) {
            None => None,
            Some(toml::Value::Table(t)) => Some(t),
            Some(v) => {
                self.error(&toml_key(key), "a table", Some(describe(v)));
                None
            }
        };
        Section {
            path: self.key_path(&toml_key(key)),
            table,
            errors: self.errors,
            known: RefCell::new(Vec::new()),
        }
    }

    /// All sub-tables of this section, by key, in file order (as toml sorts them).
    pub fn subsections(&self) -> Vec<(String, Section<'a>)> {
        let Some(t) = self.table else {
            return Vec::new();
        };
        t.keys().map(|k| (k.clone(), self.section(k))).collect()
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Option<String> {
        match self.value(key)? {
            toml::Value::String(s) => Some(s.clone()),
            v => {
                self.error(key, "a string", Some(describe(v)));
                None
            }
        }
    }

    /// A string with a default.
    pub fn str(&self, key: &str, default: &str) -> String {
        self.opt_str(key).unwrap_or_else(|| default.to_string())
    }

    /// One of `options`.
    pub fn choice(&self, key: &str, options: &[&str], default: &str) -> String {
        match self.opt_str(key) {
            None => default.to_string(),
            Some(s) if options.contains(&s.as_str()) => s,
            Some(s) => {
                self.error(
                    key,
                    format!("one of {}", quoted(options)),
                    Some(format!("\"{s}\"")),
                );
                default.to_string()
            }
        }
    }

    /// One of the values of `T`, by name (`default` when the key is absent
    /// or wrong; a wrong name is reported with every allowed one).
    pub fn named<T: fraudstream_engine::Named>(&self, key: &str, default: T) -> T {
        let names: Vec<&str> = T::ALL.iter().map(|v| v.name()).collect();
        T::from_name(&self.choice(key, &names, default.name())).unwrap_or(default)
    }

    /// A list of distinct names, each one of `allowed` (`default` when the
    /// key is absent; every wrong entry is reported with the allowed ones).
    pub fn names(&self, key: &str, allowed: &[&str], default: &[CompactString]) -> Vec<String> {
        let expected = || format!("a list of distinct names from {}", allowed.join(", "));
        match self.value(key) {
            None => default.iter().map(|n| n.to_string()).collect(),
            Some(toml::Value::Array(items)) => {
                let mut out: Vec<String> = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(n) if allowed.contains(&n) && !out.iter().any(|o| o == n) => {
                            out.push(n.to_string())
                        }
                        _ => self.error(key, expected(), Some(describe(item))),
                    }
                }
                out
            }
            Some(v) => {
                self.error(key, expected(), Some(describe(v)));
                default.iter().map(|n| n.to_string()).collect()
            }
        }
    }

    /// An integer in `[min, max]`.
    pub fn int(&self, key: &str, default: i64, min: i64, max: i64) -> i64 {
        match self.value(key) {
            None => default,
            Some(toml::Value::Integer(i)) if (min..=max).contains(i) => *i,
            Some(v) => {
                self.error(
                    key,
                    format!("an integer from {min} to {max}"),
                    Some(describe(v)),
                );
                default
            }
        }
    }

    /// A number (integer or float) in `[min, max]`.
    pub fn float(&self, key: &str, default: f64, min: f64, max: f64) -> f64 {
        let v = match self.value(key) {
            None => return default,
            Some(v) => v,
        };
        let x = match v {
            toml::Value::Integer(i) => Some(*i as f64),
            toml::Value::Float(f) => Some(*f),
            _ => None,
        };
        match x {
            Some(x) if x.is_finite() && x >= min && x <= max => x,
            _ => {
                self.error(
                    key,
                    format!("a number from {min} to {max}"),
                    Some(describe(v)),
                );
                default
            }
        }
    }

    /// A boolean.
    pub fn bool(&self, key: &str, default: bool) -> bool {
        match self.value(key) {
            None => default,
            Some(toml::Value::Boolean(b)) => *b,
            Some(v) => {
                self.error(key, "true or false", Some(describe(v)));
                default
            }
        }
    }

    /// A duration string, in ms, at least `min_ms`.
    pub fn duration(&self, key: &str, default_ms: i64, min_ms: i64) -> i64 {
        match self.value(key) {
            None => default_ms,
            Some(v) => self.duration_value(key, v, min_ms).unwrap_or(default_ms),
        }
    }

    fn duration_value(&self, key: &str, v: &toml::Value, min_ms: i64) -> Option<i64> {
        let expected = format!(
            "a duration such as \"10m\", \"1h\", \"7d\" (units ms, s, m, h, d, w) of at least {}ms",
            min_ms
        );
        match v {
            toml::Value::String(s) => match parse_duration(s) {
                Some(ms) if ms >= min_ms => Some(ms),
                _ => {
                    self.error(key, expected, Some(describe(v)));
                    None
                }
            },
            _ => {
                self.error(key, expected, Some(describe(v)));
                None
            }
        }
    }

    /// A non-empty list of durations, in ms.
    pub fn durations(&self, key: &str, default: &[i64], min_ms: i64) -> Vec<i64> {
        match self.value(key) {
            None => default.to_vec(),
            Some(toml::Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    if let Some(ms) = self.duration_value(&format!("{key}[{i}]"), item, min_ms) {
                        out.push(ms);
                    }
                }
                if out.len() == items.len() {
                    out
                } else {
                    default.to_vec()
                }
            }
            Some(v) => {
                self.error(
                    key,
                    "a non-empty array of durations such as [\"1h\", \"1d\"]",
                    Some(describe(v)),
                );
                default.to_vec()
            }
        }
    }

    /// Report keys of this table that no accessor asked for.
    pub fn finish(&self) {
        let Some(t) = self.table else { return };
        let known = self.known.borrow();
        for k in t.keys() {
            if !known.iter().any(|x| x == k) {
                let mut names: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
                names.sort();
                names.dedup();
                self.error(
                    &toml_key(k),
                    format!("a known key ({})", names.join(", ")),
                    Some("an unknown key".into()),
                );
            }
        }
    }
}

/// A key read from a file, bare when TOML allows it (letters, digits, `_`,
/// `-`), else quoted: an empty key, or one with a space or a dot, is still
/// visible and unambiguous in a dotted path.
fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    }
}

fn quoted(options: &[&str]) -> String {
    options
        .iter()
        .map(|o| format!("\"{o}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Set `dotted.key = value` in `table`, creating tables on the way; `value` is
/// read as a TOML value, or taken as a string when it is not one.
pub fn set_override(table: &mut toml::Table, assignment: &str) -> Result<(), String> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set {assignment}: expected KEY=VALUE"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(|p| p.is_empty()) {
        return Err(format!(
            "--set {assignment}: expected a dotted key such as source.days"
        ));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(format!("--set {assignment}: {p} is not a table")),
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10m"), Some(600_000));
        assert_eq!(parse_duration("1.5h"), Some(5_400_000));
        assert_eq!(parse_duration("7d"), Some(604_800_000));
        assert_eq!(parse_duration("250ms"), Some(250));
        assert_eq!(parse_duration("2w"), Some(1_209_600_000));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("3 parsecs"), None);
    }

    #[test]
    fn collects_every_error_with_key_and_expectation() {
        let t: toml::Table = toml::from_str(
            "a = \"x\"\nb = 5\n[s]\nc = \"fast\"\nd = [\"1h\", \"soon\"]\ntypo = 1\n",
        )
        .unwrap();
        let errors = Errors::new("f.toml");
        let root = Section::root(&t, &errors);
        assert_eq!(root.int("a", 1, 0, 10), 1);
        assert_eq!(root.int("b", 1, 0, 3), 1);
        let s = root.section("s");
        assert_eq!(s.choice("c", &["slow", "steady"], "slow"), "slow");
        assert_eq!(s.durations("d", &[1], 1), vec![1]);
        s.finish();
        root.finish();
        let list = errors.into_vec();
        let keys: Vec<&str> = list.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "s.c", "s.d[1]", "s.typo"]);
        assert!(list[2]
            .to_string()
            .starts_with("f.toml: s.c: expected one of \"slow\", \"steady\""));
        assert!(list[4].expected.contains("c, d"), "{}", list[4].expected);
    }

    /// Found by fuzzing (fuzz/regressions/topology/empty-key): `"" = 0` was
    /// reported under an empty key, `f.toml: : expected a known key …`.
    #[test]
    fn keys_that_are_not_bare_are_quoted() {
        let t: toml::Table = toml::from_str("\"\" = 0\n[\"a b\"]\n\"c.d\" = 1\ne = 2\n").unwrap();
        let errors = Errors::new("f.toml");
        let root = Section::root(&t, &errors);
        let s = root.section("a b");
        s.int("e", 0, 0, 1);
        s.finish();
        root.finish();
        let keys: Vec<String> = errors.into_vec().into_iter().map(|e| e.key).collect();
        assert_eq!(keys, [r#""a b".e"#, r#""a b"."c.d""#, r#""""#]);
    }

    #[test]
    fn overrides_create_tables_and_keep_types() {
        let mut t = toml::Table::new();
        set_override(&mut t, "source.days=10").unwrap();
        set_override(&mut t, "sinks.x.path=out/a.jsonl").unwrap();
        assert_eq!(t["source"]["days"].as_integer(), Some(10));
        assert_eq!(t["sinks"]["x"]["path"].as_str(), Some("out/a.jsonl"));
        assert!(set_override(&mut t, "nokey").is_err());
        assert!(set_override(&mut t, "source.days.x=1").is_err());
    }
}
