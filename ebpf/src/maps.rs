//! Every map the programs share with the agent. Names and value types come from
//! `ferrule_ebpf_common`, whose constants document each map; the statics are named exactly
//! like those constants because aya names maps after their static.

use aya_ebpf::{
    btf_maps::{self, HashOfMaps},
    macros::{btf_map, map},
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuHashMap},
};
use ferrule_ebpf_common::{
    ConnectStats, EXCLUDED_CIDRS_MAX_ENTRIES, EXCLUDED_PORTS_MAX_ENTRIES, FlowKey, InboundStats,
    OriginalDst, POD_FLOW_SLOTS, POD_IPS_MAX_ENTRIES, POD_MAX_ENTRIES, PodConfig, PodIpKey,
    SOCKET_DST_MAX_ENTRIES, Settings,
};

#[map]
pub(crate) static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

#[map]
pub(crate) static EXCL_PORTS: HashMap<u16, u8> =
    HashMap::with_max_entries(EXCLUDED_PORTS_MAX_ENTRIES, 0);

#[map]
pub(crate) static EXCL_CIDRS: LpmTrie<[u8; 16], u8> =
    LpmTrie::with_max_entries(EXCLUDED_CIDRS_MAX_ENTRIES, 0);

#[map]
pub(crate) static POD_CONFIG: HashMap<u64, PodConfig> =
    HashMap::with_max_entries(POD_MAX_ENTRIES, 0);

#[map]
pub(crate) static POD_IPS: HashMap<PodIpKey, u8> =
    HashMap::with_max_entries(POD_IPS_MAX_ENTRIES, 0);

#[map]
pub(crate) static SOCKET_DST: LruHashMap<u64, OriginalDst> =
    LruHashMap::with_max_entries(SOCKET_DST_MAX_ENTRIES, 0);

/// One pod's flows; the agent creates one per pod (with exactly this definition).
pub(crate) type PodFlows = btf_maps::LruHashMap<FlowKey, OriginalDst, { POD_FLOW_SLOTS as usize }>;

#[btf_map]
pub(crate) static POD_FLOWS: HashOfMaps<u64, PodFlows, { POD_MAX_ENTRIES as usize }> =
    HashOfMaps::new();

#[map]
pub(crate) static CONNECT_STATS: PerCpuHashMap<u64, ConnectStats> =
    PerCpuHashMap::with_max_entries(POD_MAX_ENTRIES, 0);

#[map]
pub(crate) static INBOUND_STATS: PerCpuHashMap<u64, InboundStats> =
    PerCpuHashMap::with_max_entries(POD_MAX_ENTRIES, 0);
