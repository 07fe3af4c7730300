//! `WindowSet::add` and `WindowSet::query` on the default card layout
//! (10m, 1h, 1d, 7d, 30d; 4 buckets) for 1k entities.

use criterion::{black_box, criterion_group, BatchSize, Criterion, Throughput};
use fraudstream_engine::features::FeatureConfig;
use fraudstream_engine::windows::{WindowLayout, WindowSet, WindowSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const EVENTS: usize = 10_000;
const ENTITIES: usize = 1_000;
/// 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;

/// One event: entity index, event time (ms), value.
struct Ev {
    entity: usize,
    ts: i64,
    value: f32,
    aux: u32,
}

/// The card layout of the default feature configuration.
fn card_layout() -> WindowLayout {
    let cfg = FeatureConfig::default();
    let specs: Vec<WindowSpec> = cfg
        .card_windows
        .iter()
        .map(|&horizon_ms| WindowSpec {
            horizon_ms,
            buckets: cfg.buckets,
        })
        .collect();
    WindowLayout::new(&specs)
}

/// 10k events over about a week, mostly in time order (1 in 20 up to 5
/// minutes late), spread uniformly over 1k entities.
fn stream() -> Vec<Ev> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut clock = START_MS;
    (0..EVENTS)
        .map(|_| {
            clock += rng.gen_range(0..120_000);
            let late = if rng.gen_ratio(1, 20) {
                rng.gen_range(0..300_000)
            } else {
                0
            };
            Ev {
                entity: rng.gen_range(0..ENTITIES),
                ts: clock - late,
                value: rng.gen_range(1.0f32..500.0),
                aux: rng.gen_ratio(1, 10) as u32,
            }
        })
        .collect()
}

fn add_all(layout: &WindowLayout, sets: &mut [WindowSet], events: &[Ev]) {
    for e in events {
        sets[e.entity].add(layout, e.ts, e.value, e.aux);
    }
}

fn bench_windows(c: &mut Criterion) {
    let layout = card_layout();
    let horizons = layout.specs().len();
    let events = stream();
    let empty: Vec<WindowSet> = (0..ENTITIES).map(|_| layout.new_set()).collect();
    let mut filled = empty.clone();
    add_all(&layout, &mut filled, &events);

    let mut group = c.benchmark_group("windows");

    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("add", |b| {
        b.iter_batched(
            || empty.clone(),
            |mut sets| {
                add_all(&layout, &mut sets, black_box(&events));
                sets
            },
            BatchSize::LargeInput,
        )
    });

    // One element is one `query` call: every horizon of the event's entity,
    // at the event's time, over the sets filled by the whole stream.
    group.throughput(Throughput::Elements((EVENTS * horizons) as u64));
    group.bench_function("query", |b| {
        b.iter(|| {
            let mut count = 0u64;
            for e in black_box(&events) {
                let set = &filled[e.entity];
                for i in 0..horizons {
                    count += black_box(set.query(&layout, i, e.ts)).count as u64;
                }
            }
            count
        })
    });

    group.finish();
}

criterion_group! {
    name = benches;
    config = crate::config();
    targets = bench_windows
}
