//! The JSON bodies of the enrollment API (`POST /v1/pods`, `POST /v1/cni/add|del|check`), as
//! the CNI plugin or anything else allowed on the socket sends them: decoding, the checks made
//! before touching the system, and the round trip of what was accepted.
#![no_main]

use ferrule_node_agent::enroll::PodSpec;
use ferrule_node_agent::enroll::cni::CniRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(spec) = serde_json::from_slice::<PodSpec>(body) {
        if let Err(error) = spec.validate() {
            assert_eq!(error.status(), 400, "{error}");
        }
        let json = serde_json::to_vec(&spec).expect("a pod spec serializes");
        let back: PodSpec = serde_json::from_slice(&json).expect("a pod spec reads back");
        assert_eq!(back, spec, "pod spec round trip");
    }
    if let Ok(request) = serde_json::from_slice::<CniRequest>(body) {
        let json = serde_json::to_vec(&request).expect("a CNI request serializes");
        let back: CniRequest = serde_json::from_slice(&json).expect("a CNI request reads back");
        assert_eq!(back, request, "CNI request round trip");
    }
});
