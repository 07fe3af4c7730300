//! Memory stays bounded in a long run: short soaks (`fraudstream bench
//! --soak`'s engine and stream) with the windows or the caps shortened
//! through settings, so they fill or bind within a few weeks of event time.
//! Entry counts are asserted, not RSS (the machine is shared and noisy).

use crate::util::{fraudstream, text};
use fraudstream::commands::bench_soak::{soak, DaySample, SoakOptions, SoakReport, STRUCTURES};
use fraudstream::config::Topology;

fn soak_with(set: &[&str], days: u32) -> SoakReport {
    let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
    let t = Topology::embedded(&set).unwrap_or_else(|e| panic!("{e}"));
    let r = soak(
        &t,
        &SoakOptions {
            days,
            tx_per_day: 1_000,
            seed: 7,
        },
        |_| {},
    )
    .expect("the soak runs");
    assert_eq!(r.samples.len(), days as usize);
    assert_eq!(r.transactions, u64::from(days) * 1_000);
    assert_eq!(r.refused, 0, "the generated stream passes the gate");
    r
}

fn max_of(samples: &[DaySample], count: fn(&DaySample) -> u64) -> u64 {
    samples.iter().map(count).max().unwrap_or(0)
}

#[test]
fn counts_stop_growing_once_the_retention_windows_fill() {
    let r = soak_with(
        &[
            "engine.idle_eviction=\"20d\"",
            "pending.ttl=\"30d\"",
            "evaluation.retention=\"40d\"",
        ],
        200,
    );
    assert_eq!(r.fill_days, 40);
    let (middle, last) = (&r.samples[67..133], &r.samples[133..]);
    for (name, count) in STRUCTURES {
        // Bounded by their caps, not by a window (the next test).
        if name == "compacted_days" || name == "batch_rows" {
            continue;
        }
        let (m, l) = (max_of(middle, count), max_of(last, count));
        assert!(
            m > 0 && l * 10 <= m * 11,
            "{name}: max {l} over the last third, {m} over the middle third"
        );
    }
    // A day older than the retention becomes one aggregate: one more a day.
    for s in &r.samples[40..] {
        assert_eq!(s.compacted_days, u64::from(s.day) - 40, "day {}", s.day);
    }
    // The population churned: without eviction the maps would hold every id.
    let end = r.samples.last().unwrap();
    let (card_ids, merchant_ids) = r.ids_active;
    assert!(end.cards * 3 < card_ids, "{} of {card_ids}", end.cards);
    assert!(
        end.merchants * 2 < merchant_ids,
        "{} of {merchant_ids}",
        end.merchants
    );
    // Evaluation records and label routes cover exactly the retention.
    assert_eq!(end.eval_records, 40 * 1_000);
    assert_eq!(end.label_routes, 40 * 1_000);
}

#[test]
fn every_count_stays_within_its_cap() {
    let (cards, merchants, pending, records) = (150, 40, 3_000, 5_000);
    let r = soak_with(
        &[
            &format!("engine.max_cards={cards}"),
            &format!("engine.max_merchants={merchants}"),
            &format!("pending.capacity={pending}"),
            &format!("evaluation.max_records={records}"),
        ],
        60,
    );
    let caps: [(&str, u64); 5] = [
        ("cards", cards),
        ("merchants", merchants),
        ("pending", pending),
        ("eval_records", records),
        ("label_routes", records),
    ];
    for (name, cap) in caps {
        let count = STRUCTURES.iter().find(|s| s.0 == name).unwrap().1;
        let most = max_of(&r.samples, count);
        // Within the cap, and the cap is what binds (the defaults' windows
        // alone would hold far more).
        assert!(
            most <= cap && most * 10 >= cap * 9,
            "{name}: at most {most}, cap {cap}"
        );
    }
    // Records past the cap were compacted early, not dropped.
    assert!(r.samples.last().unwrap().compacted_days >= 50);
}

#[test]
fn the_batch_champions_buffer_stays_within_its_cap() {
    // Per class; about 300 frauds are labelled within the 60 days (the
    // pending vectors are not capped here, so every label joins).
    let buffer = 200;
    let r = soak_with(&[&format!("model.batch.buffer={buffer}")], 60);
    let rows: Vec<u64> = r.samples.iter().map(|s| s.batch_rows).collect();
    let most = *rows.iter().max().unwrap();
    assert!(
        most <= 2 * buffer && most * 10 >= 2 * buffer * 9,
        "at most {most} rows, cap {buffer} per class"
    );
    // Full, it stays full: the oldest of a class make room for the newest.
    let full = rows.iter().position(|&n| n == most).unwrap();
    assert!(rows[full..].iter().all(|&n| n == most), "{rows:?}");
}

#[test]
fn bench_soak_writes_a_row_a_day_a_chart_and_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let run = fraudstream(
        &[
            "bench",
            "--soak",
            "--soak-days",
            "3",
            "--soak-tx-per-day",
            "200",
            "--out",
            "s",
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&run);
    assert!(run.status.success(), "{stderr}");
    assert!(
        stdout.contains("the run ends before the windows fill (day 120)"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(dir.path().join("s/soak.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "day,cards,merchants,pending,eval_records,label_routes,compacted_days,batch_rows,rss_mib"
    );
    assert_eq!(rows.len(), 4);
    assert!(rows[3].starts_with("3,"), "{}", rows[3]);
    let svg = std::fs::read_to_string(dir.path().join("s/soak.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for label in [
        "RSS (MiB)",
        "event time (days)",
        "label_routes",
        "compacted_days",
    ] {
        assert!(svg.contains(label), "the chart names {label}");
    }
}
