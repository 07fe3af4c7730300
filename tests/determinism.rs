//! Same seed and topology, same scores: byte for byte.

use crate::util::run_into;

#[test]
fn same_seed_writes_byte_identical_scores() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    run_into(None, a.path(), &["source.days=20"]);
    run_into(None, b.path(), &["source.days=20"]);
    run_into(None, c.path(), &["source.days=20", "source.seed=7"]);
    let read = |d: &tempfile::TempDir| std::fs::read(d.path().join("scores.jsonl")).unwrap();
    let (sa, sb, sc) = (read(&a), read(&b), read(&c));
    assert!(sa.len() > 1_000_000, "a real amount of output");
    assert!(sa == sb, "two runs with the same seed differ");
    assert!(sa != sc, "another seed gives other traffic");
    let alerts = |d: &tempfile::TempDir| std::fs::read(d.path().join("alerts.jsonl")).unwrap();
    assert!(alerts(&a) == alerts(&b));
}
