//! docker-compose.yml is for users (no Docker engine runs here): it must
//! parse, every fraudstream command in it must be accepted by the CLI, and
//! every topology it names must validate with the command's overrides.

use crate::util::repo;
use clap::Parser;
use fraudstream::commands::cli::{Cli, Command};
use fraudstream::config::Topology;

fn strings(v: &serde_yaml_ng::Value) -> Vec<String> {
    v.as_sequence()
        .expect("commands are written as lists")
        .iter()
        .map(|s| s.as_str().expect("string arguments").to_string())
        .collect()
}

#[test]
fn every_fraudstream_command_in_docker_compose_is_accepted_and_its_topology_validates() {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
    let services = doc["services"].as_mapping().expect("services");
    let mut checked = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        let image = svc["image"].as_str().unwrap_or_default();
        if !image.starts_with("fraudstream") {
            continue;
        }
        let args = strings(&svc["command"]);
        let cli =
            Cli::try_parse_from(std::iter::once("fraudstream".to_string()).chain(args.clone()))
                .unwrap_or_else(|e| panic!("service {name}: {args:?} is not accepted: {e}"));
        let (topology, set) = match cli.command {
            Command::Run(a) => (a.topology, a.set),
            Command::Topics {
                action: fraudstream::commands::cli::TopicsAction::Create { topology, set },
            } => (Some(topology), set),
            Command::Simulate(a) => (a.topology, a.set),
            other => panic!(
                "service {name}: unexpected command {:?}",
                std::mem::discriminant(&other)
            ),
        };
        if let Some(t) = topology {
            Topology::from_file(&repo().join(&t), &set).unwrap_or_else(|e| {
                panic!("service {name}: {} does not validate: {e}", t.display())
            });
        }
        checked.push(name.to_string());
    }
    checked.sort();
    assert_eq!(
        checked,
        ["engine", "simulator", "topics"],
        "the fraudstream services"
    );
    // The Fluvio side: SC, setup and SPU from the official image.
    for svc in ["sc", "sc-setup", "spu"] {
        assert!(
            services[svc]["image"]
                .as_str()
                .unwrap()
                .starts_with("infinyon/fluvio"),
            "{svc} uses the official Fluvio image"
        );
    }
}
