//! Data through tunnels: integrity, half-close, multiplexing, closing, draining.

use std::time::Duration;

use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{Direct, Mesh, SERVER, counting_relay, echo_app, id};
use crate::proxy::{OutboundError, PoolConfig, Relayed, TunnelPool, relay};

const WAIT: Duration = Duration::from_secs(10);

/// Both ends as in production: app socket -> relay -> tunnel -> relay -> app socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_mib_cross_both_relays_intact() {
    let mesh = Mesh::new();
    let app = echo_app().await;
    let server = mesh.server(Direct::default()).await;
    let stream = mesh
        .pool
        .connect(&mesh.key(server.addr), &mesh.client, &mesh.bundle, app)
        .await
        .unwrap();

    let local = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (client, accepted) = tokio::join!(
        TcpStream::connect(local.local_addr().unwrap()),
        local.accept()
    );
    let outbound = tokio::spawn(relay(stream, accepted.unwrap().0));

    let mut sent = vec![0u8; 8 << 20];
    rand::rng().fill_bytes(&mut sent);
    let (mut rd, mut wr) = client.unwrap().into_split();
    let writing = async {
        wr.write_all(&sent).await.unwrap();
        wr.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let reading = rd.read_to_end(&mut echoed);
    let ((), read) = tokio::time::timeout(WAIT, async { tokio::join!(writing, reading) })
        .await
        .expect("round trip stalled");
    read.unwrap();
    assert!(
        echoed == sent,
        "echo differs: sent {} bytes, got {}, first difference at {:?}",
        sent.len(),
        echoed.len(),
        sent.iter().zip(&echoed).position(|(a, b)| a != b)
    );
    let Relayed {
        tcp_to_tunnel,
        tunnel_to_tcp,
        result,
    } = outbound.await.unwrap();
    assert_eq!(
        (tcp_to_tunnel, tunnel_to_tcp),
        (8 << 20, 8 << 20),
        "relay byte counts"
    );
    result.expect("relay ended with an error");
}

#[tokio::test]
async fn half_close_keeps_the_other_direction_flowing() {
    let mesh = Mesh::new();
    let app = echo_app().await;
    let server = mesh.server(Direct::default()).await;
    let mut stream = mesh
        .pool
        .connect(&mesh.key(server.addr), &mesh.client, &mesh.bundle, app)
        .await
        .unwrap();

    let mut sent = vec![0u8; 1 << 20];
    rand::rng().fill_bytes(&mut sent);
    stream.write_all(&sent).await.unwrap();
    stream.shutdown().await.unwrap();
    // Only now read: the echo must still arrive after our FIN, then its own FIN.
    let mut echoed = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut echoed))
        .await
        .expect("no EOF after echo")
        .unwrap();
    assert_eq!(echoed.len(), sent.len(), "echo after half-close");
    assert!(echoed == sent, "echo after half-close differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_streams_share_one_tls_connection() {
    let mesh = Mesh::new();
    let app = echo_app().await;
    let server = mesh.server(Direct::default()).await;
    let (front, accepted) = counting_relay(server.addr).await;
    let key = mesh.key(front);

    let one = |n: u32| {
        let (mesh, key) = (&mesh, &key);
        async move {
            let mut stream = mesh
                .pool
                .connect(key, &mesh.client, &mesh.bundle, app)
                .await?;
            let msg = format!("stream {n}");
            stream.write_all(msg.as_bytes()).await?;
            stream.shutdown().await?;
            let mut back = String::new();
            stream.read_to_string(&mut back).await?;
            assert_eq!(back, msg);
            Ok::<_, Box<dyn std::error::Error>>(())
        }
    };
    let all = futures::future::join_all((0..200).map(one));
    for (n, result) in tokio::time::timeout(WAIT, all)
        .await
        .expect("streams stalled")
        .into_iter()
        .enumerate()
    {
        result.unwrap_or_else(|e| panic!("stream {n}: {e}"));
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "TCP connections to the server"
    );
    assert_eq!(mesh.pool.connection_count(), 1, "pooled connections");
}

#[tokio::test]
async fn closing_an_identity_ends_its_tunnels_and_streams() {
    let mesh = Mesh::new();
    let app = echo_app().await;
    let server = mesh.server(Direct::default()).await;
    let key = mesh.key(server.addr);
    let mut stream = mesh
        .pool
        .connect(&key, &mesh.client, &mesh.bundle, app)
        .await
        .unwrap();
    assert_eq!(mesh.pool.connection_count(), 1);

    mesh.pool.close_identity(&id(SERVER));
    assert_eq!(mesh.pool.connection_count(), 0, "tunnel still pooled");
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("stream outlived its tunnel");
    assert!(
        read.is_err(),
        "a stream of a closed tunnel must fail, not end cleanly: {read:?}"
    );

    let mut again = mesh
        .pool
        .connect(&key, &mesh.client, &mesh.bundle, app)
        .await
        .expect("a fresh tunnel");
    again.write_all(b"x").await.unwrap();
    assert_eq!(again.read_u8().await.unwrap(), b'x');
}

#[tokio::test]
async fn shutdown_lets_open_streams_finish_and_refuses_new_ones() {
    let mesh = Mesh::new();
    let app = echo_app().await;
    let server = mesh.server(Direct::default()).await;
    let mut stream = mesh
        .pool
        .connect(&mesh.key(server.addr), &mesh.client, &mesh.bundle, app)
        .await
        .unwrap();

    server.stop.send(()).unwrap();
    stream.write_all(b"still here").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut back = String::new();
    tokio::time::timeout(WAIT, stream.read_to_string(&mut back))
        .await
        .expect("drain cut the stream")
        .unwrap();
    assert_eq!(back, "still here");
    drop(stream);
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("server did not finish draining")
        .unwrap();
    // A second pool, so the first one's draining connection is not what gets tried.
    let fresh = TunnelPool::new(PoolConfig::default());
    let refused = fresh
        .connect(&mesh.key(server.addr), &mesh.client, &mesh.bundle, app)
        .await;
    assert!(
        matches!(refused, Err(OutboundError::Connect { .. })),
        "a stopped server must refuse new tunnels, got {refused:?}"
    );
}
