//! Golden digest of the event stream: guards that refactors keep the output byte-identical.
//!
//! How the expected values were taken: on commit 67b47eb (before `lib.rs` was split into
//! modules) this file was run with `cargo test -p fraudstream-sim --release --test golden --
//! --nocapture` and the printed event count and FNV-1a digest were pasted into the constants.
//! If a change to the simulator is *meant* to alter the stream, re-take them the same way and
//! say so in the commit message.

use fraudstream_sim::{
    DriftConfig, DriftMode, GenuineLabels, LabelConfig, SimConfig, SimEvent, Simulator,
};

/// FNV-1a (64-bit) over a byte stream.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// Length-prefixed, so adjacent strings cannot run into each other.
    fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.bytes(s.as_bytes());
    }
}

/// Hashes every field of every event (floats by their bit pattern); returns (events, digest).
fn digest(cfg: SimConfig) -> (u64, u64) {
    let mut h = Fnv1a::new();
    let mut n = 0u64;
    for ev in Simulator::new(cfg).expect("valid config") {
        n += 1;
        match ev {
            SimEvent::Transaction(t) => {
                h.bytes(b"T");
                h.u64(t.tx_id);
                h.u64(t.ts_ms as u64);
                h.u64(t.card as u64);
                h.u64(t.merchant as u64);
                h.u64(t.amount.to_bits());
                h.str(t.currency);
                h.u64(t.mcc as u64);
                h.str(t.country);
                h.str(t.channel.as_str());
                match t.location {
                    Some((lat, lon)) => {
                        h.bytes(b"L");
                        h.u64(lat.to_bits());
                        h.u64(lon.to_bits());
                    }
                    None => h.bytes(b"-"),
                }
                h.str(t.fraud.map_or("", |p| p.name()));
            }
            SimEvent::Label(l) => {
                h.bytes(b"B");
                h.u64(l.tx_id);
                h.u64(l.ts_ms as u64);
                h.bytes(&[l.is_fraud as u8]);
                h.str(l.pattern.map_or("", |p| p.name()));
            }
        }
    }
    (n, h.0)
}

/// Default config over 20 days (gradual drift, genuine labels after 7 days).
const DEFAULT_20_DAYS_EVENTS: u64 = 379_520;
const DEFAULT_20_DAYS_DIGEST: u64 = 0x53d6_78e5_a293_92cb;

/// A small run through the other branches: sudden drift, no genuine labels, another seed.
const VARIANT_EVENTS: u64 = 36_423;
const VARIANT_DIGEST: u64 = 0x134d_8a1b_3065_46cb;

#[test]
fn golden_digest_default_20_days() {
    let (n, d) = digest(SimConfig {
        days: 20,
        ..SimConfig::default()
    });
    println!("default 20 days: {n} events, digest {d:#018x}");
    assert_eq!((n, d), (DEFAULT_20_DAYS_EVENTS, DEFAULT_20_DAYS_DIGEST));
}

#[test]
fn golden_digest_sudden_drift_no_genuine_labels() {
    let (n, d) = digest(SimConfig {
        seed: 7,
        days: 12,
        cards: 1500,
        merchants: 300,
        fraud_rate: 0.02,
        drift: DriftConfig {
            mode: DriftMode::Sudden { at_day: 5 },
            ..DriftConfig::default()
        },
        labels: LabelConfig {
            genuine: GenuineLabels::Never,
            ..LabelConfig::default()
        },
        ..SimConfig::default()
    });
    println!("variant: {n} events, digest {d:#018x}");
    assert_eq!((n, d), (VARIANT_EVENTS, VARIANT_DIGEST));
}
