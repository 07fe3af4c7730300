//! `fraudstream topics create`: the Fluvio topics a topology reads and
//! writes, created with their partition counts.

use crate::connectors::cluster::{connect, create_topics, topics_of, TopicOutcome};
use std::path::Path;
use std::process::ExitCode;

/// Create the topics `topology` names; fails (exit 1) when one exists with
/// another partition count (it is left as it is).
pub fn create(topology: &Path, set: &[String]) -> anyhow::Result<ExitCode> {
    let t = super::load(Some(topology), set)?;
    let needs = topics_of(&t);
    anyhow::ensure!(!needs.is_empty(), "{}: names no Fluvio topic", t.file);
    let rt = tokio::runtime::Runtime::new()?;
    let done = rt.block_on(async {
        let (fluvio, address) = connect(&t.fluvio).await?;
        let done = create_topics(&fluvio, &needs).await?;
        anyhow::Ok((done, address))
    })?;
    let (done, address) = done;
    let mut mismatched = false;
    for (need, outcome) in done {
        let what = match outcome {
            TopicOutcome::Created => "created".to_string(),
            TopicOutcome::Exists => "exists".to_string(),
            TopicOutcome::ExistsWithPartitions(n) => {
                mismatched = true;
                format!("exists with {n} partitions (left as is)")
            }
        };
        println!(
            "{}: {} partition(s), for {}: {what}",
            need.name, need.partitions, need.role
        );
    }
    println!("cluster: {address}");
    Ok(super::exit_code(!mismatched))
}
