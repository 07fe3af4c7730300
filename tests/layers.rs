//! The layers depend one way: commands → exec → connectors → config →
//! engine crate. A module that names a layer above its own fails here.

use crate::util::repo;
use std::path::Path;

/// Every `.rs` file under `dir`, with its text.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            out.push((path.display().to_string(), text));
        }
    }
}

#[test]
fn no_module_names_a_layer_above_its_own() {
    let layers: [(&str, &[&str]); 4] = [
        (
            "src/config",
            &["crate::connectors", "crate::exec", "crate::commands"],
        ),
        ("src/connectors", &["crate::exec", "crate::commands"]),
        ("src/exec", &["crate::commands"]),
        (
            "crates/fraudstream-engine/src",
            &["fraudstream::", "fluvio", "tokio", "clap"],
        ),
    ];
    let mut checked = 0;
    for (dir, above) in layers {
        let mut files = Vec::new();
        sources(&repo().join(dir), &mut files);
        assert!(!files.is_empty(), "{dir} has sources");
        for (path, text) in files {
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for name in above {
                    assert!(
                        !code.contains(name),
                        "{path}:{}: names {name}, a layer above its own",
                        n + 1
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 30, "only {checked} files checked");
}
