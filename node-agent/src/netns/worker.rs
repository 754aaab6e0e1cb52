//! The thread that lives in one network namespace and creates sockets there on request.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::sync::mpsc;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use tokio::net::TcpSocket;

/// It only ever calls `socket()`, so a small stack is plenty; one exists per pod.
const STACK_SIZE: usize = 64 * 1024;

pub(super) enum SpawnError {
    Thread(io::Error),
    Enter(io::Error),
}

struct Request {
    v6: bool,
    reply: mpsc::SyncSender<io::Result<TcpSocket>>,
}

/// Handle to the namespace's thread; dropping it ends the thread.
#[derive(Debug)]
pub(super) struct Worker {
    requests: mpsc::Sender<Request>,
}

impl Worker {
    /// Starts a thread that enters the namespace `ns` and reports whether that worked before
    /// serving any request, so a bad path fails here rather than at the first socket.
    pub(super) fn spawn(ns: File) -> Result<Self, SpawnError> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (entered_tx, entered_rx) = mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("ferrule-netns".into())
            .stack_size(STACK_SIZE)
            .spawn(move || {
                let entered =
                    move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Network));
                drop(ns);
                let ok = entered.is_ok();
                let _ = entered_tx.send(entered.map_err(io::Error::from));
                if ok {
                    serve(inbox);
                }
            })
            .map_err(SpawnError::Thread)?;
        match entered_rx.recv() {
            Ok(Ok(())) => Ok(Self { requests }),
            Ok(Err(e)) => Err(SpawnError::Enter(e)),
            Err(_) => Err(SpawnError::Thread(io::Error::other("thread exited"))),
        }
    }

    pub(super) fn socket(&self, v6: bool) -> io::Result<TcpSocket> {
        let gone = || io::Error::other("the network namespace's socket thread has exited");
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .send(Request { v6, reply })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

/// Runs on the namespace's thread until every `Worker` handle is dropped.
fn serve(inbox: mpsc::Receiver<Request>) {
    for request in inbox {
        let socket = match request.v6 {
            true => TcpSocket::new_v6(),
            false => TcpSocket::new_v4(),
        };
        let _ = request.reply.send(socket);
    }
}
