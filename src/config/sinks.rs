//! Where results go: `[sinks.ID]`, each records (scores, alerts, dead
//! letters) to a file or a topic, the end-of-run summary, or the report.

use super::reader::Section;
use super::service::{self, FluvioOutput};
use super::source::{format_from, FileFormat};
use std::path::PathBuf;

/// Which records a record sink takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Records {
    /// Every score.
    Scores,
    /// Scores that raised an alert, with their explanation.
    Alerts,
    /// Rejected records with reasons.
    DeadLetters,
    /// What a merchant stage hands the card stages (the stage topic of
    /// `[stages]`; not a `[sinks]` type).
    Stage,
    /// Examples card stages share (the learn topic of `[stages]`; not a
    /// `[sinks]` type).
    Learn,
}

impl Records {
    /// The `type` naming it in a topology.
    pub fn name(self) -> &'static str {
        match self {
            Records::Scores => "scores",
            Records::Alerts => "alerts",
            Records::DeadLetters => "dead_letters",
            Records::Stage => "stage",
            Records::Learn => "learn",
        }
    }
}

/// Where a record sink writes.
#[derive(Clone, Debug, PartialEq)]
pub enum RecordTarget {
    /// A file, written from the start on every run.
    File {
        /// Path.
        path: PathBuf,
        /// Record format.
        format: FileFormat,
    },
    /// A Fluvio topic (service mode).
    Topic(FluvioOutput),
}

/// One output (`[sinks.ID]`).
#[derive(Clone, Debug, PartialEq)]
pub enum SinkConfig {
    /// Scores, alerts or dead letters, to a file or a topic.
    Records {
        /// Id in the topology.
        id: String,
        /// Which records.
        records: Records,
        /// Where to.
        to: RecordTarget,
    },
    /// End-of-run table on the terminal.
    Summary {
        /// Id in the topology.
        id: String,
    },
    /// End-of-run JSON report, and its HTML rendering.
    Report {
        /// Id in the topology.
        id: String,
        /// Path of the JSON file.
        path: PathBuf,
        /// Path of the HTML report (`html`; by default the JSON path with
        /// the extension `.html`; `html = false`: none).
        html: Option<PathBuf>,
    },
}

impl SinkConfig {
    /// Id in the topology.
    pub fn id(&self) -> &str {
        match self {
            SinkConfig::Records { id, .. }
            | SinkConfig::Summary { id }
            | SinkConfig::Report { id, .. } => id,
        }
    }

    /// The topic of a record sink that writes to Fluvio.
    pub fn topic(&self) -> Option<&FluvioOutput> {
        match self {
            SinkConfig::Records {
                to: RecordTarget::Topic(o),
                ..
            } => Some(o),
            _ => None,
        }
    }
}

pub(super) fn read_sinks(s: &Section, source_partitions: u32) -> Vec<SinkConfig> {
    const TYPES: &str = "one of \"scores\", \"alerts\", \"dead_letters\", \"summary\", \"report\"";
    let mut out = Vec::new();
    for (id, sec) in s.subsections() {
        let records = match sec.opt_str("type").as_deref() {
            Some("scores") => Records::Scores,
            Some("alerts") => Records::Alerts,
            Some("dead_letters") => Records::DeadLetters,
            Some("summary") => {
                out.push(SinkConfig::Summary { id });
                sec.finish();
                continue;
            }
            Some("report") => {
                let html = match sec.value("html") {
                    None | Some(toml::Value::Boolean(true)) => Some(None),
                    Some(toml::Value::Boolean(false)) => None,
                    Some(toml::Value::String(p)) if !p.is_empty() => Some(Some(PathBuf::from(p))),
                    Some(v) => {
                        sec.error(
                            "html",
                            "the path of the HTML report, or false for none",
                            Some(super::reader::describe(v)),
                        );
                        None
                    }
                };
                match sec.opt_str("path") {
                    Some(p) => {
                        let path = PathBuf::from(p);
                        let html = html.map(|h| h.unwrap_or_else(|| path.with_extension("html")));
                        out.push(SinkConfig::Report { id, path, html })
                    }
                    None => sec.error("path", "the path of the JSON report", None),
                }
                sec.finish();
                continue;
            }
            other => {
                sec.error("type", TYPES, other.map(|o| format!("\"{o}\"")));
                sec.finish();
                continue;
            }
        };
        let to = match service::read_fluvio_output(&sec, source_partitions) {
            Some(topic) => {
                if sec.has("path") {
                    sec.error("path", "either a path or a topic, not both", None);
                }
                Some(RecordTarget::Topic(topic))
            }
            None => {
                let p = sec.opt_str("path");
                if p.is_none() {
                    sec.error(
                        "path",
                        "the path of the output file (or a Fluvio topic)",
                        None,
                    );
                }
                let format = format_from(&sec, p.as_deref().unwrap_or(""));
                p.map(|p| RecordTarget::File {
                    path: PathBuf::from(p),
                    format,
                })
            }
        };
        sec.finish();
        if let Some(to) = to {
            out.push(SinkConfig::Records { id, records, to });
        }
    }
    out
}
