//! Host selection: hostnames, device ids, an FQL filter, a host group by name, the hosts of given alerts, or
//! all hosts; then a platform filter.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::{FalconApi, HostInfo};
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::state::HostRecord;

/// Which hosts a run targets. Sources are united; `platforms` then filters (empty = every platform).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Host names (exact, case-insensitive as Falcon matches them).
    pub hostnames: Vec<String>,
    /// Device ids (AIDs).
    pub device_ids: Vec<String>,
    /// An FQL filter over hosts.
    pub filter: Option<String>,
    /// A host group name.
    pub host_group: Option<String>,
    /// Alert composite ids: their hosts are selected.
    pub alerts: Vec<String>,
    /// Every host of the CID.
    pub all: bool,
    /// Keep only these platforms (empty = all).
    pub platforms: Vec<Platform>,
}

/// The result of resolving a [`Selection`].
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    /// The selected hosts (sorted by host name), all `pending`.
    pub hosts: Vec<HostRecord>,
    /// Requested names or ids that matched no host.
    pub not_found: Vec<String>,
    /// Hosts dropped by the platform filter.
    pub filtered_out: usize,
}

impl Resolved {
    /// Number of hosts per platform (`None` = unsupported platform).
    pub fn per_platform(&self) -> BTreeMap<Option<Platform>, usize> {
        let mut m = BTreeMap::new();
        for h in &self.hosts {
            *m.entry(h.platform).or_default() += 1;
        }
        m
    }
}

impl Selection {
    /// Whether any source is set.
    pub fn is_empty(&self) -> bool {
        self.hostnames.is_empty()
            && self.device_ids.is_empty()
            && self.filter.is_none()
            && self.host_group.is_none()
            && self.alerts.is_empty()
            && !self.all
    }

    /// Resolves the selection through the API.
    pub async fn resolve<A: FalconApi>(&self, api: &A) -> Result<Resolved> {
        if self.is_empty() {
            return Err(Error::invalid(
                "host selection",
                "nothing selected: give hostnames, device ids, a filter, a host group, alerts or all",
            ));
        }
        let mut ids: BTreeSet<String> = BTreeSet::new();
        let mut not_found = Vec::new();
        let requested_ids: BTreeSet<String> = self
            .device_ids
            .iter()
            .map(|s| s.trim().to_string())
            .collect();
        ids.extend(requested_ids.iter().cloned());
        let mut name_ids = Vec::new();
        for chunk in self.hostnames.chunks(100) {
            let filter = falcon_sdk::fql::Fql::any_of("hostname", chunk.iter().map(|h| h.trim()));
            name_ids.extend(api.host_ids(Some(filter.to_string())).await?);
        }
        ids.extend(name_ids);
        if let Some(f) = &self.filter {
            ids.extend(api.host_ids(Some(f.clone())).await?);
        }
        if let Some(g) = &self.host_group {
            let members = api.host_group_members(g).await?;
            if members.is_empty() {
                not_found.push(format!("host group {g}"));
            }
            ids.extend(members);
        }
        if !self.alerts.is_empty() {
            let found = api.alert_device_ids(&self.alerts).await?;
            if found.is_empty() {
                not_found.push("hosts of the given alerts".to_string());
            }
            ids.extend(found);
        }
        if self.all {
            ids.extend(api.host_ids(None).await?);
        }
        let ids: Vec<String> = ids.into_iter().collect();
        let mut details: Vec<HostInfo> = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(5000) {
            details.extend(api.host_details(chunk).await?);
        }
        let known: BTreeSet<&str> = details.iter().map(|d| d.device_id.as_str()).collect();
        for id in &requested_ids {
            if !known.contains(id.as_str()) {
                not_found.push(id.clone());
            }
        }
        let names: BTreeSet<String> = details.iter().map(|d| d.hostname.to_lowercase()).collect();
        for h in &self.hostnames {
            if !names.contains(&h.trim().to_lowercase()) {
                not_found.push(h.clone());
            }
        }
        let mut filtered_out = 0;
        let mut hosts: Vec<HostRecord> = Vec::with_capacity(details.len());
        for d in details {
            let platform = d.platform_name.as_deref().and_then(Platform::from_falcon);
            if !self.platforms.is_empty() && !platform.is_some_and(|p| self.platforms.contains(&p))
            {
                filtered_out += 1;
                continue;
            }
            hosts.push(HostRecord::new(d.device_id, d.hostname, platform));
        }
        hosts.sort_by(|a, b| {
            (a.hostname.to_lowercase(), &a.device_id)
                .cmp(&(b.hostname.to_lowercase(), &b.device_id))
        });
        Ok(Resolved {
            hosts,
            not_found,
            filtered_out,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_filters_are_quoted_by_the_sdk() {
        let f = falcon_sdk::fql::Fql::any_of("hostname", ["web-1", "o'neil"]);
        assert_eq!(f.to_string(), r"hostname:['web-1','o\'neil']");
    }

    #[test]
    fn empty_selection_is_detected() {
        assert!(Selection::default().is_empty());
        assert!(
            !Selection {
                all: true,
                ..Default::default()
            }
            .is_empty()
        );
        assert!(
            Selection {
                platforms: vec![Platform::Linux],
                ..Default::default()
            }
            .is_empty()
        );
    }
}
