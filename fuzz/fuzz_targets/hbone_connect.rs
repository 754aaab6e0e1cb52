//! The request line of an HBONE `CONNECT` stream, as any peer with a mesh certificate can send
//! it on port 15008: `<method> <uri>` (the uri as HTTP/2's `:authority`/`:path` make it). The
//! original destination must come out as `ip:port` or be refused with 400, never a panic.
#![no_main]

use std::net::SocketAddr;

use ferrule_node_agent::proxy::connect_destination;
use http::{Method, StatusCode, Uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (method, uri) = match data.iter().position(|&b| b == b' ') {
        Some(space) => (&data[..space], &data[space + 1..]),
        None => (&b"CONNECT"[..], data),
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method), Uri::try_from(uri)) else {
        return;
    };
    match connect_destination(&method, &uri) {
        Ok(destination) => {
            assert_eq!(method, Method::CONNECT);
            let authority = uri.authority().expect("a destination needs an authority");
            assert_eq!(authority.as_str().parse::<SocketAddr>(), Ok(destination));
        }
        Err(refusal) => {
            assert_eq!(refusal.status(), StatusCode::BAD_REQUEST, "{refusal}");
            assert_eq!(refusal.reason(), "bad_request");
        }
    }
});
