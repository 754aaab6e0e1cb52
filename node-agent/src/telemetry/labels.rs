//! Label values of the agent's metrics: fixed sets, so dashboards and alerts can enumerate them.

use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// An enum whose values are label values, spelled as `as_str` says.
macro_rules! label_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        }
    };
}

label_enum!(
    /// Which side of the tunnel this agent is on.
    Direction { Inbound => "inbound", Outbound => "outbound" }
);

label_enum!(
    /// Which way payload bytes went.
    Flow { ToDestination => "to_destination", ToSource => "to_source" }
);

label_enum!(
    /// Whose certificate failed: `server` = we verified a client, `client` = we verified a server.
    Side { Server => "server", Client => "client" }
);

label_enum!(
    /// Why a tunnelled connection ended.
    CloseReason { Ok => "ok", Error => "error", Policy => "policy", Revoked => "revoked", Drain => "drain" }
);

label_enum!(
    /// How a certificate request ended.
    RenewalResult { Ok => "ok", Failed => "failed" }
);

label_enum!(
    /// What the agent answered to a configuration update.
    UpdateResult { Ack => "ack", Nack => "nack" }
);

label_enum!(
    UpdateKind { Snapshot => "snapshot", Delta => "delta" }
);

label_enum!(
    /// An agent process on the node: this one serving, or one draining after a handover or stop.
    AgentRole { Serving => "serving", Draining => "draining" }
);

label_enum!(
    /// Which of the agent's listeners refused or cut a client.
    Listener {
        Hbone => "hbone",
        Outbound => "outbound",
        PeerEndpoint => "peer_endpoint",
        Readiness => "readiness",
        Enrollment => "enrollment",
    }
);

label_enum!(
    /// Which limit a client hit; each value is the name of its field under `limits:` in the
    /// agent's configuration, except `http2_enhance_your_calm`: h2 closed the connection with
    /// GOAWAY `ENHANCE_YOUR_CALM` (`http2.max_pending_reset_streams`,
    /// `http2.max_local_reset_streams`, or h2's own frame-flood defences; h2 does not say which),
    /// and `pod_flow_slots`: a redirected connection's original destination was gone, evicted
    /// from the pod's own flow map (a fixed size, `ferrule_ebpf_common::POD_FLOW_SLOTS`) by the
    /// pod's newer connections.
    Limit {
        Connections => "max_connections",
        ConnectionsPerPod => "max_connections_per_pod",
        PodFlowSlots => "pod_flow_slots",
        ConnectionsPerSource => "max_connections_per_source",
        ApiConnections => "max_api_connections",
        HandshakeTimeout => "handshake_timeout",
        HeaderReadTimeout => "header_read_timeout",
        PeerResetStreams => "max_peer_reset_streams",
        KeepaliveTimeout => "keepalive_timeout",
        Http2Calm => "http2_enhance_your_calm",
    }
);
