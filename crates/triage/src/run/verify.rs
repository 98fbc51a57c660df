//! Verification after a clean exit: the archive the host measured, judged by the collector's evidence rules,
//! then the capture's arrival in the Cado project (when checked).

use tokio::time::Instant;

use super::{Engine, human};
use crate::api::FalconApi;
use crate::cado::capture_arrived;
use crate::error::Result;
use crate::evidence::ArchiveFacts;
use crate::state::{HostState, reason};

impl<A: FalconApi> Engine<'_, A> {
    /// Records the archive host `i` reported after a clean exit and judges it; `Some(reason)` when it is not
    /// evidence (`too_small`, `too_large`). A host that reported no archive at all is `too_small`: a
    /// collection is never assumed.
    pub(super) fn judge_evidence(
        &mut self,
        i: usize,
        archive: Option<ArchiveFacts>,
    ) -> Option<String> {
        let rules = self.hosts[i]
            .platform
            .and_then(|p| self.ctx.collector.as_ref()?.rules(p).cloned());
        self.hosts[i].archive = archive.clone();
        let Some(facts) = archive else {
            return Some(format!(
                "{}: the host reported no archive after the collector exited",
                reason::TOO_SMALL
            ));
        };
        // (a resumed run without collector options has no rules: the facts are recorded, not judged)
        let problem = rules?.judge(&facts).err()?;
        Some(format!("{}: {problem}", problem.reason()))
    }

    pub(super) async fn check_captures(&mut self) -> Result<()> {
        let waiting: Vec<(usize, Instant)> = (0..self.hosts.len())
            .filter_map(|i| self.track[i].awaiting_capture.map(|t| (i, t)))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let (Some(cado), Some(project)) = (self.ctx.cado.clone(), self.ctx.settings.verify_project)
        else {
            return Ok(());
        };
        self.stats.capture_checks += 1;
        let pipelines = match cado.pipelines(project).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "listing cado pipelines failed; next round");
                Vec::new()
            }
        };
        let grace = self.ctx.settings.capture_grace;
        for (i, since) in waiting {
            let h = &self.hosts[i];
            if let Some(id) = capture_arrived(&pipelines, &h.hostname, h.launched_at) {
                self.track[i].awaiting_capture = None;
                tracing::debug!(hostname = %h.hostname, pipeline = id, "capture arrived");
                self.set(i, HostState::Succeeded, None)?;
            } else if since.elapsed() > grace {
                self.track[i].awaiting_capture = None;
                let why = format!(
                    "{}: collector exited 0 but no Cado pipeline for this host within {}",
                    reason::NO_CAPTURE,
                    human(grace)
                );
                self.set(i, HostState::Failed, Some(why))?;
            }
        }
        self.commit().await
    }
}
