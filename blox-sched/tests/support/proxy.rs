//! A TCP proxy in front of etcd that can be cut: one process loses etcd
//! while the others keep it.

use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards connections to `upstream` until [`Proxy::cut`].
pub struct Proxy {
    port: u16,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy to `endpoint` (`http://host:port`).
    pub async fn start(endpoint: &str) -> Proxy {
        let upstream = endpoint.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let conns = Arc::clone(&tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns.lock().unwrap().push(conn);
            }
        });
        Proxy {
            port,
            accept,
            conns: tasks,
        }
    }

    /// The proxy's client URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.accept.abort();
        self.interrupt();
    }

    /// Drops every connection (a transient failure: new ones are accepted).
    pub fn interrupt(&self) {
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}
