//! docker-compose.yml, the Dockerfile and .dockerignore are for users: no
//! Docker engine runs here, so each fact the demo relies on is checked
//! against what it depends on: the real CLI (clap), the topologies, our
//! Dockerfile, and the official Fluvio image as Fluvio's repository builds it.
//! With `FLUVIO_SC_ADDR`, the SPU registration also runs against a cluster.

use crate::util::{cluster, fraudstream, repo, text};
use clap::Parser;
use fraudstream::commands::cli::{Cli, ClusterAction, Command, RegisterSpuArgs, TopicsAction};
use fraudstream::config::Topology;
use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

// The official image, as Fluvio's repository builds it (release v0.18.1):
// k8-util/docker/fluvio.Dockerfile is `FROM alpine:3.14` and `COPY fluvio-run
// fluvio-run`, with no WORKDIR (so it lands at /), ENTRYPOINT or CMD, and no
// `fluvio` CLI (put in and reverted, commits fa4e81fa6, ff5fce8de);
// examples/docker-compose runs `./fluvio-run sc|spu` from that working dir.
const FLUVIO_IMAGE: &str = "infinyon/fluvio";
const FLUVIO_RUN: &str = "/fluvio-run";
/// Binaries a health check may name in that image: fluvio-run, and busybox
/// applets of Alpine's busybox config (aports main/busybox/busyboxconfig:
/// CONFIG_NC=y with CONFIG_NC_110_COMPAT=y, which gives `nc -z`).
const FLUVIO_IMAGE_BINARIES: &[&str] = &[FLUVIO_RUN, "nc"];
/// Image tag of each fluvio client crate version: the release tag whose
/// workspace Cargo.toml has that version (Fluvio tags v0.18.0, v0.18.1), and
/// the Docker tag its release workflow pushes (makefiles/release.mk:
/// DOCKER_IMAGE_TAG = the VERSION file, no `v`).
const FLUVIO_RELEASE_OF_CRATE: &[(&str, &str)] = &[("0.50.0", "0.18.0"), ("0.50.1", "0.18.1")];
/// Ports of the SC (fluvio-types defaults SC_PUBLIC_PORT, SC_PRIVATE_PORT;
/// fluvio-run sc binds 0.0.0.0 on both unless --bind-public/--bind-private).
const SC_PUBLIC_PORT: u16 = 9003;
const SC_PRIVATE_PORT: u16 = 9004;

// The official Prometheus image, as Prometheus's repository builds it
// (Dockerfile at v3.5.0): busybox plus /bin/prometheus and /bin/promtool,
// ENTRYPOINT ["/bin/prometheus"], CMD ["--config.file=/etc/prometheus/prometheus.yml",
// "--storage.tsdb.path=/prometheus"], EXPOSE 9090. `promtool check healthy`
// asks /-/healthy of --url (cmd/promtool/main.go). Docker tags are the
// release tags, with the `v` (Makefile.common's DOCKER_IMAGE_TAG, repo prom).
const PROMETHEUS_IMAGE: &str = "prom/prometheus";
const PROMETHEUS_ENTRYPOINT: &str = "/bin/prometheus";
const PROMETHEUS_CONFIG: &str = "/etc/prometheus/prometheus.yml";
const PROMETHEUS_DATA: &str = "/prometheus";
const PROMETHEUS_PORT: u16 = 9090;
const PROMETHEUS_IMAGE_BINARIES: &[&str] = &[PROMETHEUS_ENTRYPOINT, "/bin/promtool"];
// The official Grafana image (grafana/grafana's Dockerfile, the 12.0 line:
// alpine 3.21): `apk add ... curl`, ENV GF_PATHS_PROVISIONING=/etc/grafana/provisioning
// and GF_PATHS_DATA=/var/lib/grafana, EXPOSE 3000, ENTRYPOINT ["/run.sh"]
// (packaging/docker/run.sh starts `grafana server` with those paths).
// Provisioning reads datasources/ and dashboards/ below it
// (conf/provisioning/*/sample.yaml: `apiVersion: 1`, `datasources:`,
// `providers:` of `type: file` with `options.path`). GF_<SECTION>_<KEY>
// overrides grafana.ini: GF_AUTH_ANONYMOUS_* is [auth.anonymous],
// GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH [dashboards] default_home_dashboard_path.
const GRAFANA_IMAGE: &str = "grafana/grafana";
const GRAFANA_ENTRYPOINT: &str = "/run.sh";
const GRAFANA_PROVISIONING: &str = "/etc/grafana/provisioning";
const GRAFANA_PORT: u16 = 3000;
const GRAFANA_IMAGE_BINARIES: &[&str] = &["curl"];
/// The data source uid the dashboard's panels name.
const DATASOURCE_UID: &str = "fraudstream-prometheus";

fn compose() -> Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("docker-compose.yml is valid YAML")
}

fn services(doc: &Value) -> Vec<(String, &Value)> {
    doc["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_string(), v))
        .collect()
}

/// A list of strings (commands, health checks are written as lists).
fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("{what} is written as a list"))
        .iter()
        .map(|s| s.as_str().expect("string arguments").to_string())
        .collect()
}

fn is_fluvio(svc: &Value) -> bool {
    svc["image"]
        .as_str()
        .is_some_and(|i| i.starts_with(&format!("{FLUVIO_IMAGE}:")))
}

fn is_fraudstream(svc: &Value) -> bool {
    svc["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("fraudstream"))
}

/// Whether the service runs `image` (any tag).
fn runs_image(svc: &Value, image: &str) -> bool {
    svc["image"]
        .as_str()
        .is_some_and(|i| i.starts_with(&format!("{image}:")))
}

/// The parsed fraudstream command line of a service.
fn cli_of(name: &str, svc: &Value) -> Cli {
    let args = strings(&svc["command"], &format!("{name}'s command"));
    Cli::try_parse_from(std::iter::once("fraudstream".to_string()).chain(args.clone()))
        .unwrap_or_else(|e| panic!("service {name}: {args:?} is not accepted: {e}"))
}

/// The value after `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} in {args:?}"));
    &args[i + 1]
}

/// (host, container) ports a service publishes.
fn published(svc: &Value) -> Vec<(u16, u16)> {
    svc["ports"]
        .as_sequence()
        .map(|p| {
            p.iter()
                .map(|p| {
                    let (h, c) = p.as_str().unwrap().split_once(':').expect("HOST:CONTAINER");
                    (h.parse().unwrap(), c.parse().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').unwrap().0
}

/// The one service whose fraudstream command is `cluster register-spu`.
fn registration(doc: &Value) -> (String, RegisterSpuArgs) {
    let mut found = Vec::new();
    for (name, svc) in services(doc) {
        if !is_fraudstream(svc) {
            continue;
        }
        if let Command::Cluster {
            action: ClusterAction::RegisterSpu(a),
        } = cli_of(&name, svc).command
        {
            found.push((name, a));
        }
    }
    assert_eq!(found.len(), 1, "one service registers the SPU");
    found.pop().unwrap()
}

#[test]
fn every_fraudstream_command_is_accepted_and_its_topology_validates() {
    let doc = compose();
    let mut checked = Vec::new();
    for (name, svc) in services(&doc) {
        if !is_fraudstream(svc) {
            continue;
        }
        let (topology, set, dials_spus) = match cli_of(&name, svc).command {
            Command::Run(a) => (a.topology, a.set, true),
            Command::Topics {
                action: TopicsAction::Create { topology, set },
            } => (Some(topology), set, false),
            Command::Simulate(a) => (a.topology, a.set, true),
            Command::Cluster { .. } => (None, Vec::new(), false),
            _ => panic!("service {name}: a command the demo does not use"),
        };
        // Paths are relative to the image's WORKDIR /app, which holds topologies/.
        let t = match &topology {
            Some(t) => Topology::from_file(&repo().join(t), &set),
            None => Topology::embedded(&set),
        }
        .unwrap_or_else(|e| panic!("service {name}: {topology:?} does not validate: {e}"));
        if dials_spus {
            assert!(
                t.fluvio.use_spu_local_address,
                "service {name} reaches the SPU from inside the network: it needs \
                 fluvio.use_spu_local_address=true (the public address is the host's)"
            );
        }
        assert_eq!(
            svc["environment"]["FLUVIO_SC_ADDR"].as_str(),
            Some(format!("sc:{SC_PUBLIC_PORT}").as_str()),
            "service {name} finds the SC by its service name"
        );
        checked.push(name);
    }
    checked.sort();
    assert_eq!(
        checked,
        ["engine", "simulator", "spu-register", "topics"],
        "the fraudstream services"
    );
    let built: Vec<_> = services(&doc)
        .into_iter()
        .filter(|(_, s)| is_fraudstream(s) && !s["build"].is_null())
        .map(|(n, s)| (n, s["build"].as_str().map(str::to_string)))
        .collect();
    assert_eq!(
        built.len(),
        1,
        "one service builds fraudstream:latest for all (compose skips pulling an \
         image another service builds): {built:?}"
    );
    assert_eq!(
        built[0].1.as_deref(),
        Some("."),
        "built from the repository's Dockerfile"
    );
}

#[test]
fn fluvio_services_run_fluvio_run_from_the_pinned_official_image() {
    let lock: toml::Table = std::fs::read_to_string(repo().join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    let crate_version = lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("fluvio"))
        .and_then(|p| p["version"].as_str())
        .expect("fluvio in Cargo.lock");
    let release = FLUVIO_RELEASE_OF_CRATE
        .iter()
        .find(|(c, _)| *c == crate_version)
        .map(|(_, r)| *r)
        .unwrap_or_else(|| {
            panic!(
                "Cargo.lock has fluvio {crate_version}: find the Fluvio release with that \
                 workspace version, pin infinyon/fluvio to it and add it to FLUVIO_RELEASE_OF_CRATE"
            )
        });
    let doc = compose();
    let mut fluvio = Vec::new();
    for (name, svc) in services(&doc) {
        if !is_fluvio(svc) {
            continue;
        }
        assert_eq!(
            svc["image"].as_str(),
            Some(format!("{FLUVIO_IMAGE}:{release}").as_str()),
            "service {name}: the Fluvio release of the client crate"
        );
        assert!(
            svc["entrypoint"].is_null(),
            "service {name}: the image has no entrypoint to replace"
        );
        let cmd = strings(&svc["command"], &format!("{name}'s command"));
        let workdir = svc["working_dir"].as_str().unwrap_or("/");
        assert!(
            cmd[0] == FLUVIO_RUN || (cmd[0] == "./fluvio-run" && workdir == "/"),
            "service {name} runs {}, not the image's {FLUVIO_RUN} (it is not on PATH)",
            cmd[0]
        );
        fluvio.push((name, cmd[1].clone()));
    }
    fluvio.sort();
    assert_eq!(
        fluvio,
        [
            ("sc".to_string(), "sc".to_string()),
            ("spu".into(), "spu".into())
        ],
        "an SC and an SPU from the Fluvio image"
    );
    let sc = strings(&doc["services"]["sc"]["command"], "sc");
    assert_eq!(
        &sc[2..],
        ["--local", "/fluvio/metadata"],
        "a local-mode SC on its volume"
    );
    assert!(
        published(&doc["services"]["sc"]).contains(&(9103, SC_PUBLIC_PORT)),
        "the SC's public port reaches the host at 9103 (as in the header)"
    );
}

/// The programs a service runs: its entrypoint's (the image's, for ours) or
/// its command's first word, the first word of each command of a `sh -c`
/// script, and its health check's.
fn programs(svc: &Value) -> Vec<String> {
    let list = |v: &Value| -> Vec<String> {
        match v {
            Value::Null => Vec::new(),
            Value::String(s) => vec!["sh".into(), "-c".into(), s.clone()],
            v => strings(v, "a command"),
        }
    };
    let mut argv = list(&svc["entrypoint"]);
    if argv.is_empty() {
        // The image's ENTRYPOINT: our Dockerfile's, or the official images'.
        if is_fraudstream(svc) {
            argv.push("fraudstream".into());
        } else if runs_image(svc, PROMETHEUS_IMAGE) {
            argv.push(PROMETHEUS_ENTRYPOINT.into());
        } else if runs_image(svc, GRAFANA_IMAGE) {
            argv.push(GRAFANA_ENTRYPOINT.into());
        }
    }
    argv.extend(list(&svc["command"]));
    assert!(
        !argv.is_empty(),
        "a service with no entrypoint or command: {svc:?}"
    );
    let mut runs = vec![argv[0].clone()];
    let health = list(&svc["healthcheck"]["test"]);
    match health.first().map(String::as_str) {
        Some("CMD") => runs.push(health[1].clone()),
        Some("CMD-SHELL") => argv.extend(["sh".into(), "-c".into(), health[1].clone()]),
        _ => {}
    }
    for (i, a) in argv.iter().enumerate() {
        if a == "-c" && i > 0 && argv[i - 1].ends_with("sh") {
            if let Some(script) = argv.get(i + 1) {
                let script = ["&&", "||", ";", "|", "(", ")"]
                    .iter()
                    .fold(script.clone(), |s, sep| s.replace(sep, "\n"));
                runs.extend(
                    script
                        .lines()
                        .filter_map(|l| l.split_whitespace().next())
                        .map(str::to_string),
                );
            }
        }
    }
    runs
}

#[test]
fn no_service_calls_a_fluvio_cli() {
    let doc = compose();
    for (name, svc) in services(&doc) {
        for program in programs(svc) {
            assert!(
                program != "fluvio" && !program.ends_with("/fluvio"),
                "service {name} runs a `fluvio` CLI, which no image here has"
            );
        }
    }
    // The check sees a CLI call in a shell script (as the demo once had).
    let old: Value = serde_yaml_ng::from_str(
        "image: infinyon/fluvio:stable\nentrypoint: [\"/bin/sh\", \"-c\"]\n\
         command: [\"fluvio profile add docker sc:9003 docker && (fluvio cluster spu list | grep -q x)\"]",
    )
    .unwrap();
    assert_eq!(programs(&old), ["/bin/sh", "fluvio", "fluvio", "grep"]);
}

#[test]
fn the_spu_is_registered_by_fraudstream_with_addresses_host_and_containers_reach() {
    let doc = compose();
    let (reg_name, reg) = registration(&doc);
    let spu = &doc["services"]["spu"];
    let cmd = strings(&spu["command"], "spu's command");
    assert_eq!(
        flag(&cmd, "-i").parse::<i32>().unwrap(),
        reg.id,
        "same SPU id"
    );
    let bind_public = port_of(flag(&cmd, "-p"));
    let bind_private = port_of(flag(&cmd, "-v"));
    let sc_addr = flag(&cmd, "--sc-addr");
    assert_eq!(
        (host_of(sc_addr), port_of(sc_addr)),
        ("sc", SC_PRIVATE_PORT),
        "the SPU reaches the SC's private port by service name"
    );
    // Containers (use_spu_local_address) dial the local address: the SPU's
    // service name and the port it binds.
    let local = reg
        .local
        .as_ref()
        .expect("a local address for the containers");
    assert_eq!((local.host.as_str(), local.port), ("spu", bind_public));
    assert_eq!(
        (reg.private.host.as_str(), reg.private.port),
        ("spu", bind_private)
    );
    // The host dials the public address: loopback, on a port published to the
    // SPU's public port under the same number.
    assert!(
        ["127.0.0.1", "localhost"].contains(&reg.public.host.as_str()),
        "public address {} is the Docker host's loopback",
        reg.public
    );
    assert!(
        published(spu).contains(&(reg.public.port, bind_public)),
        "the registered public port {} is published to the SPU's {bind_public}: {:?}",
        reg.public.port,
        published(spu)
    );
    assert_eq!(
        spu["depends_on"][reg_name.as_str()]["condition"].as_str(),
        Some("service_completed_successfully"),
        "the SPU starts once it is registered"
    );
}

#[test]
fn depends_on_conditions_match_health_checks_and_one_shot_services() {
    let doc = compose();
    let all = doc["services"].as_mapping().unwrap();
    let mut conditions = 0;
    for (name, svc) in services(&doc) {
        let Some(deps) = svc["depends_on"].as_mapping() else {
            continue;
        };
        for (dep, how) in deps {
            let dep = dep.as_str().unwrap();
            let target = all
                .get(dep)
                .unwrap_or_else(|| panic!("{name} depends on {dep}, which is not a service"));
            match how["condition"].as_str() {
                Some("service_healthy") => assert!(
                    target["healthcheck"]["test"].is_sequence(),
                    "{name} waits for {dep} to be healthy, but {dep} has no health check"
                ),
                Some("service_completed_successfully") => {
                    assert!(
                        target["healthcheck"].is_null() && target["restart"].as_str() == Some("no"),
                        "{name} waits for {dep} to complete: {dep} must be a one-shot \
                         (no health check, restart \"no\")"
                    );
                    assert!(
                        is_fraudstream(target),
                        "{dep} is one of our one-shot commands"
                    );
                }
                other => panic!("{name} -> {dep}: condition {other:?} (started is not ready)"),
            }
            conditions += 1;
        }
    }
    assert!(
        conditions >= 5,
        "every service but the SC waits for another"
    );
}

#[test]
fn health_checks_name_binaries_their_images_have() {
    let doc = compose();
    let ours = fraudstream_image_binaries();
    let mut checked = BTreeSet::new();
    for (name, svc) in services(&doc) {
        if svc["healthcheck"].is_null() {
            continue;
        }
        let test = strings(
            &svc["healthcheck"]["test"],
            &format!("{name}'s health check"),
        );
        assert_eq!(
            test[0], "CMD",
            "{name}: exec form, so the binary is explicit"
        );
        let bin = test[1].as_str();
        let has = if is_fluvio(svc) {
            FLUVIO_IMAGE_BINARIES.contains(&bin)
        } else if is_fraudstream(svc) {
            ours.contains(bin)
        } else if runs_image(svc, PROMETHEUS_IMAGE) {
            PROMETHEUS_IMAGE_BINARIES.contains(&bin)
        } else if runs_image(svc, GRAFANA_IMAGE) {
            GRAFANA_IMAGE_BINARIES.contains(&bin)
        } else {
            panic!("{name}: an image this test does not know")
        };
        assert!(
            has,
            "{name}: health check runs {bin}, which its image lacks"
        );
        checked.insert(name);
    }
    assert_eq!(
        checked.into_iter().collect::<Vec<_>>(),
        ["engine", "grafana", "prometheus", "sc", "spu"],
        "the long-running services have health checks"
    );
    // Each probes the port its service listens on.
    let services = &doc["services"];
    let nc_port = |s: &str| {
        strings(&services[s]["healthcheck"]["test"], s)[4]
            .parse::<u16>()
            .unwrap()
    };
    assert_eq!(nc_port("sc"), SC_PUBLIC_PORT);
    let spu = strings(&services["spu"]["command"], "spu");
    assert_eq!(nc_port("spu"), port_of(flag(&spu, "-p")));
}

#[test]
fn restart_policies_are_set() {
    for (name, svc) in services(&compose()) {
        let policy = svc["restart"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no restart policy"));
        let long_running = !svc["healthcheck"].is_null();
        let want = if long_running { "unless-stopped" } else { "no" };
        assert_eq!(
            policy, want,
            "{name}: servers restart; one-shots do not (a restart republishes or \
             repeats a refused registration)"
        );
    }
}

#[test]
fn engine_http_port_is_published_exposed_and_health_checked() {
    let doc = compose();
    let engine = &doc["services"]["engine"];
    let Command::Run(run) = cli_of("engine", engine).command else {
        panic!("the engine service runs `fraudstream run`");
    };
    let t = Topology::from_file(&repo().join(run.topology.unwrap()), &run.set).unwrap();
    let listen = t.service.listen.expect("the engine serves /health");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "reachable from outside the container: {listen}"
    );
    let port = port_of(&listen);
    assert!(published(engine).contains(&(port, port)));
    let test = strings(&engine["healthcheck"]["test"], "engine's health check");
    assert_eq!(
        test.last().unwrap(),
        &format!("http://127.0.0.1:{port}/health")
    );
    assert!(
        dockerfile()
            .lines()
            .any(|l| l.trim() == format!("EXPOSE {port}")),
        "the Dockerfile exposes {port}"
    );
}

fn dockerfile() -> String {
    std::fs::read_to_string(repo().join("Dockerfile")).unwrap()
}

/// The runtime stage (after the last FROM) of the Dockerfile, one
/// instruction a line (continuations joined).
fn runtime_stage() -> Vec<String> {
    let text = dockerfile().replace("\\\n", " ");
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..].to_vec()
}

/// Binaries on PATH in our image: what it copies to /usr/local/bin and the
/// packages it installs that carry a binary of their name.
fn fraudstream_image_binaries() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in runtime_stage() {
        if l.starts_with("COPY ") {
            if let Some(dest) = l
                .split_whitespace()
                .last()
                .unwrap()
                .strip_prefix("/usr/local/bin/")
            {
                out.insert(dest.to_string());
            }
        }
        if let Some((_, rest)) = l.split_once("apt-get install") {
            let pkgs = rest.split("&&").next().unwrap();
            out.extend(
                pkgs.split_whitespace()
                    .filter(|w| !w.starts_with('-') && *w != "ca-certificates")
                    .map(str::to_string),
            );
        }
    }
    out
}

#[test]
fn dockerfile_copies_the_binary_the_build_makes_and_runs_unprivileged() {
    let text = dockerfile();
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a build stage and a runtime stage");
    assert!(
        froms[0].contains("-bookworm") && froms[1].contains("bookworm"),
        "both stages on Debian bookworm, so the binary finds the glibc it was linked with: {froms:?}"
    );
    assert!(text.contains("WORKDIR /src\n"));
    assert!(text.contains("cargo build --release --locked --bin fraudstream"));
    let cargo: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cargo["bin"][0]["name"].as_str(), Some("fraudstream"));
    let stage = runtime_stage();
    assert!(
        stage.contains(
            &"COPY --from=build /src/target/release/fraudstream /usr/local/bin/fraudstream"
                .to_string()
        ),
        "copies target/release/fraudstream (WORKDIR /src, default target dir)"
    );
    assert!(
        !repo().join(".cargo/config.toml").exists(),
        "no cargo config moves the target dir"
    );
    assert!(stage.contains(&"COPY topologies /app/topologies".to_string()));
    assert!(stage.contains(&"WORKDIR /app".to_string()));
    assert!(stage.contains(&r#"ENTRYPOINT ["fraudstream"]"#.to_string()));
    let user = stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert_ne!(user, "root");
    assert!(
        stage
            .iter()
            .any(|l| l.contains(&format!("chown {user} /state"))),
        "{user} owns /state, where the engine's volume is mounted"
    );
    let doc = compose();
    let mount = doc["services"]["engine"]["volumes"][0].as_str().unwrap();
    assert_eq!(mount.split_once(':').unwrap().1, "/state");
}

/// Whether `.dockerignore` excludes `path` (relative to the repository).
/// Patterns are names or paths from the root (as Docker matches them), or
/// `*.ext` at the root; `!` exceptions are not used.
fn excluded(patterns: &[String], path: &str) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim_start_matches('/').trim_end_matches('/');
        match p.strip_prefix('*') {
            Some(ext) => !path.contains('/') && path.ends_with(ext),
            None => path == p || path.starts_with(&format!("{p}/")),
        }
    })
}

#[test]
fn dockerignore_keeps_what_the_image_build_reads() {
    let patterns: Vec<String> = std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(patterns
        .iter()
        .all(|p| !p.starts_with('!') && !p.contains("**")));
    for big in ["target", ".git"] {
        assert!(excluded(&patterns, big), "{big} is not sent to the build");
    }
    // What `cargo build --locked --bin fraudstream` reads: manifests, lock,
    // every workspace member, every target Cargo.toml declares (Cargo checks
    // they exist), and files built into the binary; what the Dockerfile copies.
    let cargo: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mut needed: Vec<String> = vec!["Cargo.toml".into(), "Cargo.lock".into()];
    for m in cargo["workspace"]["members"].as_array().unwrap() {
        let m = m.as_str().unwrap();
        if m != "." {
            needed.push(format!("{m}/Cargo.toml"));
            needed.push(format!("{m}/src"));
        }
    }
    needed.push(cargo["lib"]["path"].as_str().unwrap().into());
    for kind in ["bin", "test", "bench"] {
        for t in cargo[kind].as_array().unwrap() {
            let path = match t.get("path") {
                Some(p) => p.as_str().unwrap().to_string(),
                None => format!("{kind}es/{}.rs", t["name"].as_str().unwrap()),
            };
            needed.push(path);
        }
    }
    needed.extend(included_files());
    for l in dockerfile().lines() {
        if let Some(rest) = l.strip_prefix("COPY ") {
            if !rest.starts_with("--from") {
                let src = rest.split_whitespace().next().unwrap();
                if src != "." {
                    needed.push(src.to_string());
                }
            }
        }
    }
    for path in &needed {
        assert!(repo().join(path).exists(), "{path} exists");
        assert!(
            !excluded(&patterns, path),
            ".dockerignore excludes {path}, which the build reads"
        );
    }
    assert!(needed.contains(&"benches/engine.rs".to_string()));
    assert!(needed.contains(&"topologies/embedded.toml".to_string()));
}

/// Files `include_str!`/`include_bytes!` build into the crates, relative to
/// the repository.
fn included_files() -> Vec<String> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = ["src", "crates", "simulators"]
        .iter()
        .map(|d| repo().join(d))
        .collect();
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("include_") {
                    let rest = &text[i..];
                    if !(rest.starts_with("include_str!(\"")
                        || rest.starts_with("include_bytes!(\""))
                    {
                        continue;
                    }
                    let arg = rest.split('"').nth(1).unwrap();
                    let file = p.parent().unwrap().join(arg);
                    let file = std::fs::canonicalize(&file)
                        .unwrap_or_else(|e| panic!("{} includes {arg}: {e}", p.display()));
                    let root = std::fs::canonicalize(repo()).unwrap();
                    out.push(file.strip_prefix(&root).unwrap().display().to_string());
                }
            }
        }
    }
    out
}

/// `fraudstream cluster register-spu` against a real SC: registers, finds the
/// same registration again (exit 0), refuses a different one (exit 1) and
/// leaves the first as it was. The SPU it registers never runs (an offline
/// SPU gets no new partitions: the SC assigns replicas to online SPUs only),
/// and the test unregisters it.
#[test]
fn register_spu_is_idempotent_against_a_real_cluster() {
    let Some(addr) = cluster("register_spu_is_idempotent_against_a_real_cluster") else {
        return;
    };
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let id = 7000 + (stamp % 2000) as i32;
    let name = format!("t{}-spu", stamp % 100_000_000);
    let register = |public: &str| {
        let id = id.to_string();
        let args = [
            "cluster",
            "register-spu",
            "--sc",
            &addr,
            "--id",
            &id,
            "--name",
            &name,
            "--public",
            public,
            "--local",
            "spu:9010",
            "--private",
            "spu:9011",
            "--attempts",
            "3",
        ];
        let out = fraudstream(&args, &repo());
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    let cleanup = || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let f = fluvio::Fluvio::connect_with_config(&fluvio::FluvioClusterConfig::new(
                addr.clone(),
            ))
            .await
            .unwrap();
            let left = fraudstream::connectors::cluster::unregister_spu(&f, &name).await;
            let list = f
                .admin()
                .await
                .all::<fluvio::metadata::customspu::CustomSpuSpec>()
                .await
                .unwrap();
            (left, list)
        })
    };

    let first = register("127.0.0.1:9110");
    let again = register("127.0.0.1:9110");
    let other = register("127.0.0.1:9111");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stored = rt.block_on(async {
        let f =
            fluvio::Fluvio::connect_with_config(&fluvio::FluvioClusterConfig::new(addr.clone()))
                .await
                .unwrap();
        f.admin()
            .await
            .all::<fluvio::metadata::customspu::CustomSpuSpec>()
            .await
            .unwrap()
            .into_iter()
            .find(|m| m.name == name)
    });
    let (unregistered, after) = cleanup();

    assert_eq!(first.0, Some(0), "registers: {first:?}");
    assert!(
        first.1.contains(&format!(
            "{name} (id {id}): public 127.0.0.1:9110, local spu:9010, private spu:9011: registered"
        )),
        "{first:?}"
    );
    assert_eq!(again.0, Some(0), "idempotent: {again:?}");
    assert!(again.1.contains("already registered"), "{again:?}");
    assert_eq!(
        other.0,
        Some(1),
        "a different registration is refused: {other:?}"
    );
    assert!(
        other.2.contains("public 127.0.0.1:9111")
            && other.2.contains("the SC already has")
            && other.2.contains("public 127.0.0.1:9110"),
        "names what was asked and what is there: {other:?}"
    );
    let stored = stored.expect("the SC lists the registration");
    assert_eq!(stored.spec.id, id);
    assert_eq!(
        stored.spec.public_endpoint.addr(),
        "127.0.0.1:9110",
        "the first one stays"
    );
    let local = stored
        .spec
        .public_endpoint_local
        .expect("the SC keeps the local address");
    assert_eq!((local.host.as_str(), local.port), ("spu", 9010));
    unregistered.expect("unregistered");
    assert!(after.iter().all(|m| m.name != name), "cleaned up");
}

/// (repository path, container path, read-only) of a service's bind mounts
/// (`./PATH:CONTAINER[:ro]`); named volumes are left out.
fn bind_mounts(svc: &Value) -> Vec<(PathBuf, String, bool)> {
    svc["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let v = v.as_str().expect("short volume syntax");
            let rest = v.strip_prefix("./")?;
            let mut parts = rest.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().expect("SRC:DST"));
            Some((
                repo().join(src),
                dst.to_string(),
                parts.next() == Some("ro"),
            ))
        })
        .collect()
}

/// The repository file or folder mounted at `container` (a mount's target
/// or a path below it).
fn mounted_at(svc: &Value, container: &str) -> Option<PathBuf> {
    bind_mounts(svc).into_iter().find_map(|(src, dst, _)| {
        let rest = container.strip_prefix(&dst)?;
        match rest.strip_prefix('/') {
            Some(below) => Some(src.join(below)),
            None if rest.is_empty() => Some(src),
            None => None,
        }
    })
}

fn yaml_file(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn monitoring_images_are_pinned_mount_existing_files_read_only_and_publish_their_ports() {
    let doc = compose();
    for (name, image, port) in [
        ("prometheus", PROMETHEUS_IMAGE, PROMETHEUS_PORT),
        ("grafana", GRAFANA_IMAGE, GRAFANA_PORT),
    ] {
        let svc = &doc["services"][name];
        let tag = svc["image"]
            .as_str()
            .and_then(|i| i.strip_prefix(&format!("{image}:")))
            .unwrap_or_else(|| panic!("{name} runs {image}"));
        assert!(
            tag.trim_start_matches('v').split('.').count() == 3
                && tag
                    .trim_start_matches('v')
                    .split('.')
                    .all(|n| n.parse::<u32>().is_ok()),
            "{name}: a pinned release, not {tag}"
        );
        assert!(published(svc).contains(&(port, port)), "{name} on {port}");
        let mounts = bind_mounts(svc);
        assert!(!mounts.is_empty(), "{name} mounts its configuration");
        for (src, dst, ro) in mounts {
            assert!(
                src.exists(),
                "{name}: {} (for {dst}) is in the repository",
                src.display()
            );
            assert!(ro, "{name}: {dst} is mounted read-only");
        }
    }
}

#[test]
fn prometheus_reads_the_mounted_config_and_scrapes_fraudstream_services_by_name() {
    let doc = compose();
    let prom = &doc["services"]["prometheus"];
    assert!(
        prom["command"].is_null() && prom["entrypoint"].is_null(),
        "the image's own command, which reads {PROMETHEUS_CONFIG}"
    );
    let config = mounted_at(prom, PROMETHEUS_CONFIG).expect("the config is mounted");
    let volumes = strings(&prom["volumes"], "prometheus's volumes");
    assert!(
        volumes
            .iter()
            .any(|v| v.ends_with(&format!(":{PROMETHEUS_DATA}"))),
        "the TSDB in a volume: {volumes:?}"
    );
    let cfg = yaml_file(&config);
    let rules = strings(&cfg["rule_files"], "rule_files");
    assert!(!rules.is_empty());
    for r in &rules {
        let file = mounted_at(prom, r).unwrap_or_else(|| panic!("rule file {r} is mounted"));
        assert!(file.is_file(), "{}", file.display());
    }
    let mut scraped = Vec::new();
    for job in cfg["scrape_configs"].as_sequence().expect("scrape_configs") {
        assert_eq!(
            job["metrics_path"].as_str().unwrap_or("/metrics"),
            "/metrics"
        );
        for sc in job["static_configs"].as_sequence().unwrap() {
            for target in strings(&sc["targets"], "targets") {
                let (host, port) = (host_of(&target), port_of(&target));
                let svc = &doc["services"][host];
                assert!(
                    is_fraudstream(svc),
                    "{target}: {host} is one of our services"
                );
                let Command::Run(run) = cli_of(host, svc).command else {
                    panic!("{host} runs `fraudstream run`");
                };
                let topology = run.topology.expect("a topology file");
                let t = Topology::from_file(&repo().join(topology), &run.set).unwrap();
                let listen = t.service.listen.expect("it serves /metrics");
                assert!(
                    listen.starts_with("0.0.0.0:"),
                    "{host} listens beyond its loopback"
                );
                assert_eq!(
                    port,
                    port_of(&listen),
                    "{target}: the port {host} serves /metrics on"
                );
                scraped.push(host.to_string());
            }
        }
    }
    assert_eq!(scraped, ["engine"]);
}

#[test]
fn grafana_is_provisioned_with_the_prometheus_service_and_the_mounted_dashboards() {
    let doc = compose();
    let grafana = &doc["services"]["grafana"];
    assert_eq!(
        grafana["depends_on"]["prometheus"]["condition"].as_str(),
        Some("service_healthy")
    );
    // Data sources: the compose service Prometheus is, on its port, with
    // the uid the dashboard names.
    let dir = mounted_at(grafana, &format!("{GRAFANA_PROVISIONING}/datasources"))
        .expect("data sources are provisioned");
    let mut uids = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let ds = yaml_file(&f.unwrap().path());
        assert_eq!(ds["apiVersion"].as_u64(), Some(1));
        for d in ds["datasources"].as_sequence().expect("datasources") {
            assert_eq!(d["type"].as_str(), Some("prometheus"));
            let url = d["url"].as_str().unwrap();
            let addr = url.strip_prefix("http://").expect("http://HOST:PORT");
            assert!(
                runs_image(&doc["services"][host_of(addr)], PROMETHEUS_IMAGE),
                "{url}: the Prometheus service"
            );
            assert_eq!(port_of(addr), PROMETHEUS_PORT);
            uids.push(d["uid"].as_str().expect("a fixed uid").to_string());
        }
    }
    assert_eq!(uids, [DATASOURCE_UID]);
    // Dashboards: a file provider whose path is the mounted dashboards folder.
    let dir = mounted_at(grafana, &format!("{GRAFANA_PROVISIONING}/dashboards"))
        .expect("dashboards are provisioned");
    let mut dashboards = Vec::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = yaml_file(&f.unwrap().path());
        assert_eq!(p["apiVersion"].as_u64(), Some(1));
        for provider in p["providers"].as_sequence().expect("providers") {
            assert_eq!(provider["type"].as_str(), Some("file"));
            let path = provider["options"]["path"].as_str().unwrap();
            let folder = mounted_at(grafana, path)
                .unwrap_or_else(|| panic!("{path} is mounted from the repository"));
            for d in std::fs::read_dir(folder).unwrap() {
                dashboards.push(d.unwrap().path());
            }
        }
    }
    assert!(!dashboards.is_empty());
    for d in &dashboards {
        let text = std::fs::read_to_string(d).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut named = BTreeSet::new();
        fn uids(v: &serde_json::Value, out: &mut BTreeSet<String>) {
            match v {
                serde_json::Value::Object(m) => {
                    if let Some(u) = m.get("datasource").and_then(|d| d["uid"].as_str()) {
                        out.insert(u.to_string());
                    }
                    m.values().for_each(|v| uids(v, out));
                }
                serde_json::Value::Array(a) => a.iter().for_each(|v| uids(v, out)),
                _ => {}
            }
        }
        uids(&json, &mut named);
        assert_eq!(
            named.into_iter().collect::<Vec<_>>(),
            [DATASOURCE_UID],
            "{}: every panel queries the provisioned data source",
            d.display()
        );
    }
    let home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
        .as_str()
        .expect("the dashboard is Grafana's home page");
    let home = mounted_at(grafana, home).expect("the home dashboard is mounted");
    assert!(dashboards.contains(&home), "{}", home.display());
    assert_eq!(
        grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"].as_str(),
        Some("true"),
        "the demo opens without a login"
    );
}
