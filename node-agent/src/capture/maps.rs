//! Typed handles on the pinned maps. `ConfigMaps` holds the handles the agent writes (behind a
//! lock in `Capture`); `Lookups` holds separate read-only handles on the hot-path maps, so
//! looking up a connection never waits for an enrollment.

use std::collections::BTreeSet;

use aya::maps::{
    Array, HashMap, HashOfMaps, LpmTrie, Map, MapData, MapError, PerCpuHashMap, lpm_trie::Key,
};
use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_LRU_HASH;
use ferrule_ebpf_common::{
    CONNECT_STATS_MAP, ConnectStats, EXCLUDED_CIDRS_MAP, EXCLUDED_PORTS_MAP, FlowKey,
    INBOUND_STATS_MAP, InboundStats, LEGACY_FLOW_DST_MAP, OriginalDst, POD_CONFIG_MAP,
    POD_FLOW_SLOTS, POD_FLOWS_MAP, POD_IPS_MAP, PodConfig, PodIpKey, SETTINGS_MAP, Settings,
};

use super::{Error, layout::Layout};

/// Each pod's flow map, by network-namespace cookie (see `ferrule_ebpf_common::POD_FLOWS_MAP`).
type PodFlows = HashOfMaps<MapData, u64, FlowMap>;
type FlowMap = HashMap<MapData, FlowKey, OriginalDst>;

/// Opens the map pinned as `name` with the typed wrapper `M` (which checks type and sizes).
fn open<M>(layout: &Layout, name: &'static str) -> Result<M, Error>
where
    M: TryFrom<Map, Error = MapError>,
{
    let error = |source| Error::Map { name, source };
    let data = MapData::from_pin(layout.map(name)).map_err(error)?;
    M::try_from(Map::from_map_data(data).map_err(error)?).map_err(error)
}

/// Maps the agent writes: node settings, pod configuration, and per-pod state to clear.
pub(super) struct ConfigMaps {
    settings: Array<MapData, Settings>,
    excluded_ports: HashMap<MapData, u16, u8>,
    excluded_cidrs: LpmTrie<MapData, [u8; 16], u8>,
    pod_config: HashMap<MapData, u64, PodConfig>,
    pod_ips: HashMap<MapData, PodIpKey, u8>,
    pod_flows: PodFlows,
    connect_stats: PerCpuHashMap<MapData, u64, ConnectStats>,
    inbound_stats: PerCpuHashMap<MapData, u64, InboundStats>,
}

impl ConfigMaps {
    pub(super) fn open(layout: &Layout) -> Result<Self, Error> {
        Ok(Self {
            settings: open(layout, SETTINGS_MAP)?,
            excluded_ports: open(layout, EXCLUDED_PORTS_MAP)?,
            excluded_cidrs: open(layout, EXCLUDED_CIDRS_MAP)?,
            pod_config: open(layout, POD_CONFIG_MAP)?,
            pod_ips: open(layout, POD_IPS_MAP)?,
            pod_flows: open(layout, POD_FLOWS_MAP)?,
            connect_stats: open(layout, CONNECT_STATS_MAP)?,
            inbound_stats: open(layout, INBOUND_STATS_MAP)?,
        })
    }

    /// Gives the pod a flow map unless it has one. An existing map is kept: it holds the entries
    /// of connections not yet accepted.
    pub(super) fn ensure_pod_flows(&mut self, netns_cookie: u64) -> Result<(), Error> {
        if self.pod_flows.get(&netns_cookie, 0).is_ok() {
            return Ok(());
        }
        let error = map_error(POD_FLOWS_MAP);
        let definition = aya_obj::Map::new_from_params(
            BPF_MAP_TYPE_LRU_HASH as u32,
            size_of::<FlowKey>() as u32,
            size_of::<OriginalDst>() as u32,
            POD_FLOW_SLOTS,
            0,
        );
        // The kernel's map name (15 bytes at most) only shows in bpftool.
        let data = MapData::create(definition, "pod_flows", None).map_err(error)?;
        let flows = FlowMap::try_from(Map::from_map_data(data).map_err(error)?).map_err(error)?;
        self.pod_flows
            .insert(netns_cookie, &flows, 0)
            .map_err(error)
    }

    /// Makes the node-wide maps say exactly what the configuration says. Entries in both the old
    /// and the new configuration are never removed, so a restart with unchanged settings has no
    /// window in which an exclusion is missing.
    pub(super) fn apply_settings(
        &mut self,
        settings: Settings,
        excluded_ports: &BTreeSet<u16>,
        excluded_cidrs: &[Key<[u8; 16]>],
    ) -> Result<(), Error> {
        self.settings
            .set(0, settings, 0)
            .map_err(map_error(SETTINGS_MAP))?;
        sync_ports(&mut self.excluded_ports, excluded_ports)?;
        sync_cidrs(&mut self.excluded_cidrs, excluded_cidrs)
    }

    /// Writes a pod's mode and own addresses, replacing what an earlier enrollment wrote.
    pub(super) fn set_pod(
        &mut self,
        netns_cookie: u64,
        config: PodConfig,
        ips: &BTreeSet<[u8; 16]>,
    ) -> Result<(), Error> {
        let error = map_error(POD_IPS_MAP);
        for ip in ips {
            let key = PodIpKey {
                netns_cookie,
                ip: *ip,
            };
            self.pod_ips.insert(key, 1, 0).map_err(error)?;
        }
        let stale = keys_where(&self.pod_ips, |key: &PodIpKey| {
            key.netns_cookie == netns_cookie && !ips.contains(&key.ip)
        });
        remove_keys(&mut self.pod_ips, stale, POD_IPS_MAP)?;
        self.pod_config
            .insert(netns_cookie, config, 0)
            .map_err(map_error(POD_CONFIG_MAP))
    }

    /// Removes everything the maps hold about a pod.
    pub(super) fn clear_pod(&mut self, netns_cookie: u64) -> Result<(), Error> {
        remove_keys(&mut self.pod_config, vec![netns_cookie], POD_CONFIG_MAP)?;
        let ips = keys_where(&self.pod_ips, |key: &PodIpKey| {
            key.netns_cookie == netns_cookie
        });
        remove_keys(&mut self.pod_ips, ips, POD_IPS_MAP)?;
        // The kernel frees the pod's flow map with its last reference.
        ignore_missing(self.pod_flows.remove(&netns_cookie), POD_FLOWS_MAP)?;
        ignore_missing(self.connect_stats.remove(&netns_cookie), CONNECT_STATS_MAP)?;
        ignore_missing(self.inbound_stats.remove(&netns_cookie), INBOUND_STATS_MAP)
    }
}

fn sync_ports(map: &mut HashMap<MapData, u16, u8>, wanted: &BTreeSet<u16>) -> Result<(), Error> {
    for port in wanted {
        map.insert(port, 1, 0)
            .map_err(map_error(EXCLUDED_PORTS_MAP))?;
    }
    let stale = keys_where(map, |port: &u16| !wanted.contains(port));
    remove_keys(map, stale, EXCLUDED_PORTS_MAP)
}

fn sync_cidrs(
    map: &mut LpmTrie<MapData, [u8; 16], u8>,
    wanted: &[Key<[u8; 16]>],
) -> Result<(), Error> {
    let error = map_error(EXCLUDED_CIDRS_MAP);
    for key in wanted {
        map.insert(key, 1, 0).map_err(error)?;
    }
    let id = |key: &Key<[u8; 16]>| (key.prefix_len(), key.data());
    let wanted: BTreeSet<_> = wanted.iter().map(id).collect();
    // Collected before removing: deleting while walking a trie's keys can skip entries.
    let stale: Vec<_> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|key| !wanted.contains(&id(key)))
        .collect();
    for key in stale {
        ignore_missing(map.remove(&key), EXCLUDED_CIDRS_MAP)?;
    }
    Ok(())
}

/// Keys of a hash map matching `keep`, collected before any removal: deleting while walking a
/// hash map's keys can restart or skip the walk.
fn keys_where<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    keep: impl Fn(&K) -> bool,
) -> Vec<K> {
    map.keys()
        .filter_map(Result::ok)
        .filter(|key| keep(key))
        .collect()
}

fn remove_keys<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    keys: Vec<K>,
    name: &'static str,
) -> Result<(), Error> {
    for key in keys {
        ignore_missing(map.remove(&key), name)?;
    }
    Ok(())
}

/// A removal of a key that is already gone (never written, or removed concurrently by the
/// programs, e.g. an LRU eviction) succeeded as far as the caller is concerned. The kernel
/// reports it as `ENOENT`, which aya passes on as a syscall error.
fn ignore_missing(result: Result<(), MapError>, name: &'static str) -> Result<(), Error> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.kind() == std::io::ErrorKind::NotFound => {
            Ok(())
        }
        Err(source) => Err(map_error(name)(source)),
    }
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> Error + Copy {
    move |source| Error::Map { name, source }
}

/// Read-only handles for the agent's hot paths and metrics.
pub(super) struct Lookups {
    pod_flows: PodFlows,
    /// Version 1's shared flow map, while an upgrade from it left one pinned: connections its
    /// programs captured just before the switch are still looked up there.
    legacy_flows: Option<FlowMap>,
    connect_stats: PerCpuHashMap<MapData, u64, ConnectStats>,
    inbound_stats: PerCpuHashMap<MapData, u64, InboundStats>,
}

impl Lookups {
    pub(super) fn open(layout: &Layout) -> Result<Self, Error> {
        Ok(Self {
            pod_flows: open(layout, POD_FLOWS_MAP)?,
            legacy_flows: layout
                .map(LEGACY_FLOW_DST_MAP)
                .exists()
                .then(|| open(layout, LEGACY_FLOW_DST_MAP))
                .transpose()?,
            connect_stats: open(layout, CONNECT_STATS_MAP)?,
            inbound_stats: open(layout, INBOUND_STATS_MAP)?,
        })
    }

    /// The recorded destination of a redirected connection, if there is one. A read error is
    /// treated as "none": the caller then refuses the connection, which fails closed.
    pub(super) fn original_destination(&self, key: &FlowKey) -> Option<OriginalDst> {
        let recorded = self
            .pod_flows
            .get(&key.netns_cookie, 0)
            .ok()
            .and_then(|flows| flows.get(key, 0).ok());
        recorded.or_else(|| self.legacy_flows.as_ref()?.get(key, 0).ok())
    }

    pub(super) fn connect_stats(&self, netns_cookie: u64) -> ConnectStats {
        self.connect_stats
            .get(&netns_cookie, 0)
            .map(|cpus| {
                cpus.iter()
                    .fold(ConnectStats::default(), |a, b| a.merged(*b))
            })
            .unwrap_or_default()
    }

    pub(super) fn inbound_stats(&self, netns_cookie: u64) -> InboundStats {
        self.inbound_stats
            .get(&netns_cookie, 0)
            .map(|cpus| {
                cpus.iter()
                    .fold(InboundStats::default(), |a, b| a.merged(*b))
            })
            .unwrap_or_default()
    }
}
