//! The connector's operations, wired to the real clients: [`run`], [`reconcile`], [`check`].

use std::collections::{BTreeSet, HashMap};
use std::future::Future;

use futures::TryStreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::batch::{self, Batch, Change, Intent};
use crate::config::Config;
use crate::deadletter::DeadLetterFile;
use crate::engine::{Engine, EngineOptions, RunEnd, Summary};
use crate::error::{Error, chain};
use crate::falcon::FalconStore;
use crate::mapping::{self, IocKey, MappingOptions};
use crate::opencti::{self, OpenCtiPinger, OpenCtiSource};
use crate::state::{Identity, StateFile};

/// Options of [`run`] (command-line flags).
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Look up and plan, write nothing, leave the cursor where it is.
    pub dry_run: bool,
    /// Exit once the recovery snapshot and everything up to the stream's last event id at connect
    /// time is written.
    pub until_caught_up: bool,
}

/// Runs the connector: register, resume from the saved state, sync until `shutdown` resolves (or until
/// caught up). A remote state reset (from the OpenCTI UI) starts a full re-sync, as the Python connector.
///
/// `shutdown` is polled until it resolves once (a plain `async fn` such as a signal handler is
/// fine); from then on the run winds down: the batch in flight gets the shutdown grace period to be
/// written, the state is saved and pinged.
pub async fn run(
    config: &Config,
    options: &RunOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<Summary, Error> {
    let token = CancellationToken::new();
    let body = run_until(config, options, &token);
    tokio::pin!(body);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            r = &mut body => return r,
            _ = &mut shutdown, if !token.is_cancelled() => token.cancel(),
        }
    }
}

async fn run_until(
    config: &Config,
    options: &RunOptions,
    shutdown: &CancellationToken,
) -> Result<Summary, Error> {
    let falcon = crate::falcon::client(config)?;
    let store = FalconStore::new(falcon);
    let octi = opencti::client(config)?;
    let state_file = StateFile::new(&config.sync.state_file, Identity::of(config));
    let mut opts = EngineOptions::from_config(config);
    opts.dry_run = options.dry_run;
    opts.until_caught_up = options.until_caught_up;
    let mut engine = Engine::new(
        store,
        opts,
        (!options.dry_run).then(|| state_file.clone()),
        DeadLetterFile::new(&config.sync.dead_letter_file),
    );
    // Dissemination assurance: reports after each batch, reconciliation and hits on their interval
    // (never in a dry run, never with DEPLOYMENT_REPORTING_ENABLED=false).
    let assurance = if options.dry_run {
        None
    } else {
        crate::assurance::runtime::Assurance::new(&octi, config.assurance.clone())
            .map(crate::assurance::runtime::SharedAssurance::new)
    };
    if let Some(a) = &assurance {
        engine = engine.with_assurance(a.clone());
    }
    let reconciling = async {
        match &assurance {
            Some(a) => {
                crate::assurance::run::reconcile_loop(
                    a.clone(),
                    &engine,
                    &octi,
                    &config.sync.state_file,
                    shutdown,
                )
                .await
            }
            None => shutdown.cancelled().await,
        }
    };
    tokio::pin!(reconciling);
    let mut reconciling_done = false;
    let summary = loop {
        // A dry run writes nothing anywhere: no registration (which can also clear the local file).
        let state = tokio::select! {
            r = async {
                if options.dry_run {
                    opencti::peek_state(&octi, config, &state_file).await
                } else {
                    opencti::register(&octi, config, &state_file).await
                }
            } => r?,
            _ = shutdown.cancelled() => return Ok(engine.stats().summary("shutdown")),
        };
        info!(state = %state.to_connector_state(), "resuming from state");
        let mut source = OpenCtiSource::open(&octi, config, state);
        let pinger = OpenCtiPinger::new(octi.clone(), config.connector.id.clone(), None);
        let end = {
            let run = engine.run(&mut source, &pinger, shutdown);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break r?,
                    _ = &mut reconciling, if !reconciling_done => reconciling_done = true,
                }
            }
        };
        let ended = match end {
            RunEnd::StateReset => {
                warn!("state reset in OpenCTI: starting a full re-sync");
                if !options.dry_run {
                    state_file.clear().await?;
                }
                continue;
            }
            RunEnd::Shutdown => "shutdown",
            RunEnd::CaughtUp => "caught_up",
            RunEnd::SourceEnded => "stream_ended",
        };
        break engine.stats().summary(ended);
    };
    if let Some(a) = &assurance {
        // Exit flush, within the delivery bound.
        a.lock().await.flush().await;
    }
    Ok(summary)
}

/// One dissemination-assurance reconciliation now (and one hit collection), as the run loop does
/// every `DEPLOYMENT_RECONCILIATION_INTERVAL`: what `--until-caught-up` runs and tests use.
pub async fn reconcile_deployments(
    config: &Config,
) -> Result<crate::assurance::runtime::ReconcileRun, Error> {
    let engine = Engine::new(
        FalconStore::new(crate::falcon::client(config)?),
        EngineOptions::from_config(config),
        None,
        DeadLetterFile::new(&config.sync.dead_letter_file),
    );
    let octi = opencti::client(config)?;
    let Some(mut a) = crate::assurance::runtime::Assurance::new(&octi, config.assurance.clone())
    else {
        return Ok(crate::assurance::runtime::ReconcileRun {
            skipped: Some("DEPLOYMENT_REPORTING_ENABLED is false".into()),
            ..Default::default()
        });
    };
    Ok(
        crate::assurance::run::reconcile_once(&mut a, &engine, &octi, &config.sync.state_file)
            .await,
    )
}

/// Default of [`ReconcileOptions::max_removals`] (`--max-removals`).
pub const DEFAULT_MAX_REMOVALS: usize = 25;

/// Options of [`reconcile`] (command-line flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileOptions {
    /// Plan and report, write nothing anywhere.
    pub dry_run: bool,
    /// Most IOCs the plan may remove (delete or soft delete) without `confirmed`.
    pub max_removals: usize,
    /// The operator confirmed removals above `max_removals` (`--yes`).
    pub confirmed: bool,
}

impl Default for ReconcileOptions {
    fn default() -> Self {
        ReconcileOptions {
            dry_run: false,
            max_removals: DEFAULT_MAX_REMOVALS,
            confirmed: false,
        }
    }
}

/// What [`reconcile`] plans to write, known before anything is written.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// Indicators matching the stream.
    pub indicators: usize,
    /// IOCs those indicators want.
    pub wanted: usize,
    /// Owned IOCs found in Falcon (not yet withdrawn ones and withdrawn ones).
    pub owned: usize,
    /// IOCs to create.
    pub creates: usize,
    /// Owned IOCs to update (fields or owner tags), removals excluded.
    pub updates: usize,
    /// Owned IOCs no indicator wants, to delete or soft delete.
    pub removals: usize,
    /// Owned IOCs already as wanted.
    pub unchanged: usize,
}

/// What [`reconcile`] found and did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReconcileSummary {
    /// Indicators matching the stream.
    pub indicators: usize,
    /// IOCs those indicators want.
    pub wanted: usize,
    /// Owned IOCs found in Falcon (not yet withdrawn ones and withdrawn ones).
    pub owned: usize,
    /// The plan's counts.
    pub plan: ReconcilePlan,
    /// Writes made (or, in a dry run, that would be made).
    pub writes: Summary,
}

/// Diffs the indicators matching the live stream against the IOCs the connector owns, and fixes the
/// drift both ways: missing or outdated IOCs are written, owned IOCs no indicator wants are removed
/// (soft or permanent delete as configured).
///
/// Nothing is written unless the whole picture was read: an incomplete indicator listing (repeated
/// cursor, fewer than `globalCount`) or unreadable stream filters are errors. `on_plan` receives the
/// plan's counts before any write. A plan removing more than `max_removals` IOCs is refused with
/// [`Error::RemovalLimit`] unless `confirmed`. With `dry_run`, nothing is written anywhere.
pub async fn reconcile(
    config: &Config,
    options: &ReconcileOptions,
    on_plan: impl FnOnce(&ReconcilePlan),
) -> Result<ReconcileSummary, Error> {
    let store = FalconStore::new(crate::falcon::client(config)?);
    let octi = opencti::client(config)?;
    let indicators = opencti::stream_indicators(
        &octi,
        &config.connector.live_stream_id,
        config.connector.with_inferences,
    )
    .await?;
    let owned: HashMap<IocKey, batch::ExistingIoc> = store
        .list_owned()
        .map_ok(|e| (e.key.clone(), e))
        .try_collect()
        .await?;
    let mopts = MappingOptions::from_config(config);
    let now = chrono::Utc::now();
    // Every live indicator upserts its IOCs (owners are unioned); then each owned IOC's owner tags
    // that no live indicator backs are removed, and an owned IOC no indicator wants is removed
    // outright (anonymous removal: also IOCs without owner tags, e.g. the Python connector's).
    let mut batch = Batch::new();
    let mut wanted: HashMap<IocKey, BTreeSet<String>> = HashMap::new();
    for stix in &indicators {
        let m = mapping::map_indicator(stix, &mopts, now);
        if m.withdrawn.is_some() {
            continue;
        }
        for i in m.iocs {
            let owners = wanted.entry(i.key.clone()).or_default();
            if let Some(id) = &m.indicator_id {
                owners.insert(id.clone());
            }
            batch.push(Change {
                key: i.key.clone(),
                intent: Intent::Upsert(i),
                event_id: "reconcile".into(),
                indicator_id: m.indicator_id.clone(),
            });
        }
    }
    let n_wanted = wanted.len();
    let mut owned_keys: Vec<&IocKey> = owned.keys().collect();
    owned_keys.sort();
    for k in owned_keys {
        let e = &owned[k];
        let labels = batch::labels_of(&e.tags);
        let remove = |indicator_id: Option<String>| Change {
            key: k.clone(),
            intent: Intent::Remove {
                labels: labels.clone(),
            },
            event_id: "reconcile".into(),
            indicator_id,
        };
        match wanted.get(k) {
            None => batch.push(remove(None)),
            Some(live) => {
                for stale in batch::owners_of(&e.tags).difference(live) {
                    batch.push(remove(Some(stale.clone())));
                }
            }
        }
    }
    let plan = batch::plan(
        &batch.pending(),
        &owned,
        config.crowdstrike.permanent_delete,
    );
    let soft_deletes = plan.updates.iter().filter(|(u, _)| u.soft_delete).count();
    let counts = ReconcilePlan {
        indicators: indicators.len(),
        wanted: n_wanted,
        owned: owned.len(),
        creates: plan.creates.len(),
        updates: plan.updates.len() - soft_deletes,
        removals: plan.deletes.len() + soft_deletes,
        unchanged: plan.unchanged,
    };
    info!(plan = ?counts, "reconcile plan");
    on_plan(&counts);
    if !options.dry_run && !options.confirmed && counts.removals > options.max_removals {
        return Err(Error::RemovalLimit {
            removals: counts.removals,
            limit: options.max_removals,
        });
    }
    let mut opts = EngineOptions::from_config(config);
    opts.dry_run = options.dry_run;
    let engine = Engine::new(
        store,
        opts,
        None,
        DeadLetterFile::new(&config.sync.dead_letter_file),
    );
    let mut dead = crate::engine::Dead::new();
    engine.execute(plan, &mut dead, None).await?;
    Ok(ReconcileSummary {
        indicators: indicators.len(),
        wanted: n_wanted,
        owned: owned.len(),
        plan: counts,
        writes: engine.stats().summary(if options.dry_run {
            "dry_run"
        } else {
            "reconciled"
        }),
    })
}

/// The verdict on one dependency.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckResult {
    /// `opencti`, `live stream`, `falcon`.
    pub name: String,
    /// Whether it works.
    pub ok: bool,
    /// What was found (version, stream name, or the error).
    pub detail: String,
}

/// Checks connectivity and permissions: OpenCTI reachable with the token, the live stream exists and
/// is running, Falcon accepts the credentials, allows IOC reads and IOC writes (`ioc:write`: an
/// update of no item, which changes nothing, must not be refused with 403).
pub async fn check(config: &Config) -> Vec<CheckResult> {
    let mut out = Vec::new();
    let mut push = |name: &str, r: Result<String, String>| {
        out.push(CheckResult {
            name: name.into(),
            ok: r.is_ok(),
            detail: r.unwrap_or_else(|e| e),
        })
    };
    match opencti::client(config) {
        Err(e) => push("opencti", Err(chain(&e))),
        Ok(c) => {
            push(
                "opencti",
                c.health_check()
                    .await
                    .map(|v| format!("platform version {v}"))
                    .map_err(|e| chain(&e)),
            );
            let id = &config.connector.live_stream_id;
            if id == "live" || id == "raw" {
                push("live stream", Ok(format!("global stream `{id}`")));
            } else {
                push(
                    "live stream",
                    match c.stream_collection(id).await {
                        Ok(s) if s.stream_live => Ok(format!("`{}` is running", s.name)),
                        Ok(s) => Err(format!("`{}` is stopped (stream_live = false)", s.name)),
                        Err(e) => Err(chain(&e)),
                    },
                );
            }
        }
    }
    match crate::falcon::client(config) {
        Err(e) => push("falcon", Err(chain(&e))),
        Ok(c) => {
            let store = FalconStore::new(c.clone());
            let read = c
                .iocs()
                .query()
                .filter(store.owned_filter().to_string())
                .limit(1)
                .send()
                .await;
            let read_ok = read.is_ok();
            push(
                "falcon",
                read.map(|p| {
                    format!(
                        "authenticated on {}; {} IOCs owned by this connector",
                        c.base_url().as_str().trim_end_matches('/'),
                        p.total().unwrap_or(p.items.len() as u64)
                    )
                })
                .map_err(|e| chain(&e)),
            );
            if read_ok {
                push("falcon write", check_write_scope(&c).await);
            }
        }
    }
    out
}

/// `PATCH /iocs/entities/indicators/v1` with no item: refused with 401/403 without `ioc:write`,
/// and a no-op otherwise (whatever else Falcon answers to an empty update).
async fn check_write_scope(c: &falcon_sdk::FalconClient) -> Result<String, String> {
    let r = c
        .raw(falcon_sdk::Method::PATCH, "/iocs/entities/indicators/v1")
        .json(&serde_json::json!({"indicators": []}))
        .send::<serde_json::Value>()
        .await;
    match r {
        Ok(_) => Ok("IOC write allowed (ioc:write)".into()),
        Err(e) if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403)) => Err(format!(
            "IOC writes refused: give the API client the \"IOC Manager: write\" scope ({})",
            chain(&e)
        )),
        Err(e) if e.status().is_some_and(|s| s.is_client_error()) => {
            Ok("IOC write allowed (ioc:write)".into())
        }
        Err(e) => Err(chain(&e)),
    }
}
