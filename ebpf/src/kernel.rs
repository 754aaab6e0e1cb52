//! Reads and writes of kernel-owned memory: program contexts and map values. All of the eBPF
//! crate's unsafe code lives here, behind safe functions.
//!
//! Context fields are read one `u32` at a time with volatile loads: the verifier only accepts
//! 4-byte accesses to the address fields, and a plain array copy may be merged into 8-byte loads.
#![allow(
    unsafe_code,
    reason = "context and map-value access needs raw pointers"
)]

use core::ptr::{addr_of, addr_of_mut, read_volatile, write_volatile};

use aya_ebpf::{
    EbpfContext,
    bindings::bpf_sock,
    btf_maps::HashOfMaps,
    helpers::{bpf_get_netns_cookie, bpf_get_socket_cookie, bpf_sk_fullsock},
    programs::{SkBuffContext, SockAddrContext, SockOpsContext},
};

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
/// `BPF_TCP_LISTEN`: the receiving socket is a listener, so the packet opens a connection.
const TCP_LISTEN: u32 = 10;

/// Cookie of the network namespace of the context's socket (stable for its lifetime).
pub(crate) fn netns_cookie(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: the helper is allowed for every program type that calls this (sock_addr,
    // sock_ops, cgroup_skb; the verifier rejects the others) and only reads the context.
    unsafe { bpf_get_netns_cookie(ctx.as_ptr()) }
}

/// The kernel's unique, never reused id of the context's socket.
pub(crate) fn socket_cookie(ctx: &impl EbpfContext) -> u64 {
    // SAFETY: allowed for sock_addr and sock_ops programs; only reads the context.
    unsafe { bpf_get_socket_cookie(ctx.as_ptr()) }
}

/// Whether the socket calling `connect()` is TCP (not UDP, ICMP or raw).
pub(crate) fn is_tcp_stream(ctx: &SockAddrContext) -> bool {
    // SAFETY: the kernel passes a valid `bpf_sock_addr`; the verifier rewrites these loads into
    // reads of the socket, and `type`/`protocol` are readable for every sock_addr attach type.
    let (sock_type, protocol) = unsafe {
        (
            read_volatile(addr_of!((*ctx.sock_addr).type_)),
            read_volatile(addr_of!((*ctx.sock_addr).protocol)),
        )
    };
    sock_type == SOCK_STREAM && protocol == IPPROTO_TCP
}

/// Destination IPv4 address passed to `connect()`, in network order.
pub(crate) fn user_ip4(ctx: &SockAddrContext) -> [u8; 4] {
    // SAFETY: valid context (see `is_tcp_stream`); `user_ip4` is readable in connect4.
    unsafe { read_volatile(addr_of!((*ctx.sock_addr).user_ip4)) }.to_ne_bytes()
}

/// Destination IPv6 address passed to `connect()`, in network order.
pub(crate) fn user_ip6(ctx: &SockAddrContext) -> [u8; 16] {
    let mut words = [0u32; 4];
    for (i, word) in words.iter_mut().enumerate() {
        // SAFETY: valid context; each `user_ip6` word is readable in connect6 as a u32.
        *word = unsafe { read_volatile(addr_of!((*ctx.sock_addr).user_ip6[i])) };
    }
    words_to_bytes(words)
}

/// Destination port passed to `connect()`, in host order.
pub(crate) fn user_port(ctx: &SockAddrContext) -> u16 {
    // SAFETY: valid context; `user_port` holds the port in network order in its low 16 bits.
    let raw = unsafe { read_volatile(addr_of!((*ctx.sock_addr).user_port)) };
    #[allow(
        clippy::cast_possible_truncation,
        reason = "the port is the low 16 bits"
    )]
    u16::from_be(raw as u16)
}

/// Rewrites the IPv4 destination `connect()` will use.
pub(crate) fn set_user_ip4(ctx: &SockAddrContext, ip: [u8; 4]) {
    // SAFETY: valid context; connect4 programs may write `user_ip4`.
    unsafe {
        write_volatile(
            addr_of_mut!((*ctx.sock_addr).user_ip4),
            u32::from_ne_bytes(ip),
        )
    };
}

/// Rewrites the IPv6 destination `connect()` will use.
pub(crate) fn set_user_ip6(ctx: &SockAddrContext, ip: [u8; 16]) {
    for (i, word) in bytes_to_words(ip).into_iter().enumerate() {
        // SAFETY: valid context; connect6 programs may write each `user_ip6` word as a u32.
        unsafe { write_volatile(addr_of_mut!((*ctx.sock_addr).user_ip6[i]), word) };
    }
}

/// Rewrites the destination port (host order) `connect()` will use.
pub(crate) fn set_user_port(ctx: &SockAddrContext, port: u16) {
    // SAFETY: valid context; connect4/6 programs may write `user_port` (network order).
    unsafe {
        write_volatile(
            addr_of_mut!((*ctx.sock_addr).user_port),
            u32::from(port.to_be()),
        )
    };
}

/// Local IPv4 address of a sock_ops socket, in network order.
pub(crate) fn local_ip4(ctx: &SockOpsContext) -> [u8; 4] {
    // SAFETY: the kernel passes a valid `bpf_sock_ops`; `local_ip4` is readable as a u32.
    unsafe { read_volatile(addr_of!((*ctx.ops).local_ip4)) }.to_ne_bytes()
}

/// Local IPv6 address of a sock_ops socket, in network order.
pub(crate) fn local_ip6(ctx: &SockOpsContext) -> [u8; 16] {
    let mut words = [0u32; 4];
    for (i, word) in words.iter_mut().enumerate() {
        // SAFETY: valid context; each `local_ip6` word is readable as a u32.
        *word = unsafe { read_volatile(addr_of!((*ctx.ops).local_ip6[i])) };
    }
    words_to_bytes(words)
}

/// Remote IPv6 address of a sock_ops socket, in network order.
pub(crate) fn remote_ip6(ctx: &SockOpsContext) -> [u8; 16] {
    let mut words = [0u32; 4];
    for (i, word) in words.iter_mut().enumerate() {
        // SAFETY: valid context; each `remote_ip6` word is readable as a u32.
        *word = unsafe { read_volatile(addr_of!((*ctx.ops).remote_ip6[i])) };
    }
    words_to_bytes(words)
}

/// Local port of a sock_ops socket, in host order.
pub(crate) fn local_port(ctx: &SockOpsContext) -> u16 {
    // SAFETY: valid context; `local_port` is a u32 in host order.
    let port = unsafe { read_volatile(addr_of!((*ctx.ops).local_port)) };
    #[allow(clippy::cast_possible_truncation, reason = "ports are 16 bits")]
    let port = port as u16;
    port
}

/// Index of the device the packet arrived on.
pub(crate) fn ingress_ifindex(ctx: &SkBuffContext) -> u32 {
    // SAFETY: the kernel passes a valid `__sk_buff`; `ingress_ifindex` is readable in cgroup_skb.
    unsafe { read_volatile(addr_of!((*ctx.skb.skb).ingress_ifindex)) }
}

/// Whether the packet is being delivered to a TCP listening socket, i.e. it tries to open (or
/// finish opening) a connection to the pod.
pub(crate) fn delivered_to_tcp_listener(ctx: &SkBuffContext) -> bool {
    // SAFETY: valid context; `sk` is the receiving socket (the kernel sets it for cgroup_skb)
    // or null, which is checked before use.
    let sk: *mut bpf_sock = unsafe { read_volatile(addr_of!((*ctx.skb.skb).__bindgen_anon_2.sk)) };
    if sk.is_null() {
        return false;
    }
    // SAFETY: `sk` is a non-null socket pointer from the context, what the helper expects; it
    // returns null unless the socket is a full socket.
    let full = unsafe { bpf_sk_fullsock(sk) };
    if full.is_null() {
        return false;
    }
    // SAFETY: `full` is a non-null full socket, whose `protocol` and `state` are readable.
    let (protocol, state) = unsafe {
        (
            read_volatile(addr_of!((*full).protocol)),
            read_volatile(addr_of!((*full).state)),
        )
    };
    protocol == IPPROTO_TCP && state == TCP_LISTEN
}

/// Reads `value` with a load the compiler may neither fold into a constant nor drop.
pub(crate) fn read_volatile_u32(value: &u32) -> u32 {
    // SAFETY: a reference is valid, aligned and initialised for reads.
    unsafe { read_volatile(value) }
}

/// Applies `update` to this CPU's copy of a per-CPU map value.
pub(crate) fn update_per_cpu<V: Copy>(value: *mut V, update: impl FnOnce(V) -> V) {
    // SAFETY: `value` comes from a successful lookup in a per-CPU map, so it points to this
    // CPU's live, aligned copy of the value for the rest of this program run, which cannot
    // migrate to another CPU; no other CPU writes this copy.
    unsafe { *value = update(*value) };
}

/// The inner map stored under `key` in a hash of maps.
pub(crate) fn inner_map<K, V, const MAX: usize, const FLAGS: usize>(
    outer: &'static HashOfMaps<K, V, MAX, FLAGS>,
    key: K,
) -> Option<&'static V> {
    // SAFETY: the reference names a map, used only as a helper argument (insert, remove); it is
    // never read or written through. The kernel keeps the inner map alive for the rest of this
    // program run (RCU), even if the agent removes it from the outer map meanwhile.
    unsafe { outer.get(&key) }
}

/// Copies out a value found by a hash-map lookup.
pub(crate) fn read_value<V: Copy>(value: *const V) -> V {
    // SAFETY: `value` comes from a successful lookup in this program run; the kernel keeps the
    // element alive (RCU) until the run ends. A concurrent update replaces the element rather
    // than writing into it, so the copy is not torn.
    unsafe { *value }
}

fn words_to_bytes(words: [u32; 4]) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for (chunk, word) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

fn bytes_to_words(bytes: [u8; 16]) -> [u32; 4] {
    let mut words = [0u32; 4];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
        *word = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
    }
    words
}
