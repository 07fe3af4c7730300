//! `fraudstream cluster register-spu`: register a custom SPU with the SC,
//! for clusters run from the official `infinyon/fluvio` image, which holds
//! `fluvio-run` but no `fluvio` CLI (docker-compose.yml).

use super::cli::RegisterSpuArgs;
use crate::config::FluvioSettings;
use crate::connectors::cluster::{
    connect_to, describe_spu, register_spu as register, resolve, AddressSource, ClusterAddress,
    SpuOutcome, SpuRegistration,
};
use fluvio::FluvioClusterConfig;
use std::process::ExitCode;

/// Register the SPU `a` describes; exit 1 when its id or name is taken by
/// a registration with other addresses (which is left as it is).
pub fn register_spu(a: &RegisterSpuArgs) -> anyhow::Result<ExitCode> {
    let spu = SpuRegistration {
        id: a.id,
        name: a
            .name
            .clone()
            .unwrap_or_else(|| format!("custom-spu-{}", a.id)),
        public: a.public.clone(),
        local: a.local.clone(),
        private: a.private.clone(),
    };
    let settings = FluvioSettings {
        connect_attempts: a.attempts.max(1),
        ..FluvioSettings::default()
    };
    let address = match &a.sc {
        Some(sc) => ClusterAddress {
            config: FluvioClusterConfig::new(sc.clone()),
            source: AddressSource::CommandLine,
        },
        None => resolve(&settings)?,
    };
    let rt = tokio::runtime::Runtime::new()?;
    let (outcome, address) = rt.block_on(async {
        let (fluvio, address) = connect_to(address, &settings).await?;
        anyhow::Ok((register(&fluvio, &spu).await?, address))
    })?;
    let spec = describe_spu(&spu.name, &spu.spec());
    let ok = match outcome {
        SpuOutcome::Registered => {
            println!("{spec}: registered");
            true
        }
        SpuOutcome::Exists => {
            println!("{spec}: already registered");
            true
        }
        SpuOutcome::Conflicts(there) => {
            eprintln!(
                "fraudstream: cannot register {spec}: the SC already has {there} \
                 (left as it is; unregister it, or start from fresh SC metadata)"
            );
            false
        }
    };
    println!("cluster: {address}");
    Ok(super::exit_code(ok))
}
