//! The assurance inside the connector run: the Falcon writes of a reconciliation through the
//! engine, and the reconciliation loop (first run one minute after start, then every
//! `DEPLOYMENT_RECONCILIATION_INTERVAL`), with the hit collection and its cursor file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opencti_client::{DeploymentReport, DeploymentStatus, OpenCtiClient};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::hits::HitCursor;
use super::report::{Holdings, batch_reports};
use super::runtime::{Assurance, ReconcileRun, SharedAssurance, Writer};
use crate::batch::{self, Batch, Change, Intent};
use crate::engine::{Dead, Engine};
use crate::error::chain;
use crate::falcon::FalconStore;
use crate::mapping::{IocKey, map_indicator};

/// Delay of the first reconciliation after the start (upstream: 60 s).
pub const FIRST_RUN_DELAY: Duration = Duration::from_secs(60);

/// The Falcon side of a reconciliation, through the engine (same pacing, dead letters, owner tags).
pub(crate) struct EngineWriter<'a> {
    pub(crate) engine: &'a Engine<FalconStore>,
    pub(crate) octi: &'a OpenCtiClient,
}

impl EngineWriter<'_> {
    /// Writes `b` (the IOCs `keys`); returns the keys Falcon refused (dead-lettered), with why,
    /// and what Falcon holds for `keys` afterwards.
    async fn write(&self, b: &Batch, keys: &[IocKey]) -> Result<(Dead, Holdings), String> {
        let (existing, refused) = self.engine.lookup_all(keys).await.map_err(|e| chain(&e))?;
        if let Some((k, why)) = refused.iter().next() {
            return Err(format!("Falcon refused the lookup of {k}: {why}"));
        }
        let mut held = Holdings::default();
        held.looked_up(keys, &existing);
        let plan = batch::plan(
            &b.pending(),
            &existing,
            self.engine.options().permanent_delete,
        );
        held.planned(&plan);
        let mut dead = Dead::new();
        self.engine
            .execute(plan, &mut dead, Some(&mut held))
            .await
            .map_err(|e| chain(&e))?;
        Ok((dead, held))
    }
}

impl Writer for EngineWriter<'_> {
    async fn withdraw(&self, indicator: &str, iocs: &[IocKey]) -> Result<(), String> {
        let mut b = Batch::new();
        for k in iocs {
            b.push(Change {
                key: k.clone(),
                intent: Intent::Remove { labels: Vec::new() },
                event_id: "reconcile".into(),
                indicator_id: Some(indicator.to_owned()),
            });
        }
        let (dead, _) = self.write(&b, iocs).await?;
        match dead.into_iter().next() {
            None => Ok(()),
            Some((k, why)) => Err(format!("{k}: {why}")),
        }
    }

    async fn repush(
        &self,
        indicator: &str,
        standard_id: &str,
    ) -> Result<Option<DeploymentReport>, String> {
        let filter = json!({"mode": "and", "filterGroups": [],
            "filters": [{"key": ["id"], "values": [indicator], "operator": "eq", "mode": "or"}]});
        let page = self
            .octi
            .indicators()
            .filters(filter)
            .first(1)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "The indicator cannot be read from OpenCTI for a new push: {}",
                    chain(&e)
                )
            })?;
        let Some(node) = page.nodes.first() else {
            return Err(
                "The indicator is no longer readable in OpenCTI (deleted, or out of this account's reach); nothing was pushed".into(),
            );
        };
        let now = chrono::Utc::now();
        let m = map_indicator(
            &crate::opencti::indicator_to_stix(node),
            &self.engine.options().mapping,
            now,
        );
        if m.withdrawn.is_some() {
            // Revoked or expired since: the next run withdraws it.
            return Ok(None);
        }
        if m.iocs.is_empty() {
            let mut r = DeploymentReport::new(standard_id, DeploymentStatus::Failed);
            r.error_message = Some(match m.skipped.first() {
                Some(s) => format!(
                    "The indicator is not supported by CrowdStrike: {}",
                    s.reason
                ),
                None => "The indicator type is not supported by CrowdStrike".into(),
            });
            r.last_sync_at = Some(now);
            return Ok(Some(r));
        }
        let mut b = Batch::new();
        let keys: Vec<IocKey> = m.iocs.iter().map(|i| i.key.clone()).collect();
        for i in m.iocs {
            b.push(Change {
                key: i.key.clone(),
                intent: Intent::Upsert(i),
                event_id: "reconcile".into(),
                indicator_id: Some(standard_id.to_owned()),
            });
        }
        let (dead, mut held) = self.write(&b, &keys).await?;
        self.engine
            .read_back(&mut held, &keys)
            .await
            .map_err(|e| chain(&e))?;
        Ok(batch_reports(&b.pending(), &held, &dead, now)
            .into_iter()
            .find(|r| r.indicator_id == standard_id))
    }
}

/// The hit cursor file: the state file's path with `.hits.json` appended.
pub(crate) fn hit_cursor_path(state_file: &str) -> Option<PathBuf> {
    (!state_file.is_empty()).then(|| PathBuf::from(format!("{state_file}.hits.json")))
}

fn load_cursor(path: Option<&PathBuf>) -> Option<HitCursor> {
    let text = std::fs::read_to_string(path?).ok()?;
    match serde_json::from_str(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(error = %e, "unreadable hit cursor file; hits restart from one hour back");
            None
        }
    }
}

fn save_cursor(path: Option<&PathBuf>, c: &HitCursor) {
    let Some(path) = path else { return };
    let tmp = path.with_extension("tmp");
    let r = std::fs::write(&tmp, serde_json::to_vec(c).expect("cursor serializes"))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = r {
        warn!(error = %e, file = %path.display(), "cannot save the hit cursor");
    }
}

/// Reconciliation (and hits) every interval until `shutdown`; never returns an error (each run
/// logs its outcome).
pub(crate) async fn reconcile_loop(
    assurance: Arc<SharedAssurance>,
    engine: &Engine<FalconStore>,
    octi: &OpenCtiClient,
    state_file: &str,
    shutdown: &CancellationToken,
) {
    let settings = assurance.lock().await.settings().clone();
    let Some(interval) = settings
        .reconciliation_interval
        .filter(|_| settings.reporting_enabled)
    else {
        return shutdown.cancelled().await;
    };
    let mut wait = FIRST_RUN_DELAY;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        wait = interval;
        let mut a = assurance.lock().await;
        reconcile_once(&mut a, engine, octi, state_file).await;
    }
}

/// One reconciliation and, when hits are on, one hit collection.
pub(crate) async fn reconcile_once(
    a: &mut Assurance,
    engine: &Engine<FalconStore>,
    octi: &OpenCtiClient,
    state_file: &str,
) -> ReconcileRun {
    if a.unsupported().await {
        info!(
            reason = "Write-back not supported by the OpenCTI platform",
            "reconciliation skipped"
        );
        return ReconcileRun {
            skipped: Some("Write-back not supported by the OpenCTI platform".into()),
            ..Default::default()
        };
    }
    let writer = EngineWriter { engine, octi };
    let run_start = chrono::Utc::now();
    let owned = engine.store_ref().list_owned();
    let (mut run, values) = a.reconcile(owned, &writer, run_start).await;
    info!(run = ?run, "deployment reconciliation");
    if run.skipped.is_some() || !a.settings().hits_on() || values.is_empty() {
        return run;
    }
    let cursor_path = hit_cursor_path(state_file);
    let cursor = load_cursor(cursor_path.as_ref());
    let falcon = engine.store_ref().sdk_client().clone();
    match a
        .collect_hits(&falcon, &values, cursor.as_ref(), chrono::Utc::now(), |c| {
            save_cursor(cursor_path.as_ref(), c)
        })
        .await
    {
        Ok(h) => {
            info!(hits = ?h, "hit collection");
            run.hits = Some(h);
        }
        Err(why) => {
            warn!(reason = %why, "hit collection failed; retried next run from the same window");
            run.hits_failed = Some(why);
        }
    }
    run
}
