//! The daemon's shutdown and liveness, as an operator meets them: SIGTERM
//! ends open streams and exits 0 (memory store and etcd); a daemon whose
//! etcd has stopped answering still stops within its `--shutdown-grace`; a daemon
//! still waiting for etcd answers `/v1/ping` and says in `/v1/ready` what it
//! waits for. The deadlines are generous liveness bounds, not performance
//! figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use blox_state::testing::etcd_server::EtcdServer;
use support::{Proc, client, daemon, free_port, local, terminate, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A generous bound on a stop that should take a few seconds.
const STOP_BOUND: Duration = Duration::from_secs(20);

async fn ready(addr: SocketAddr) {
    wait_for("readiness", Duration::from_secs(60), async || {
        client::get(addr, "/v1/ready").await.status == 200
    })
    .await;
}

/// With a `/v1/stream/tasks` client connected, SIGTERM ends the stream and
/// the daemon exits 0.
async fn sigterm_ends_an_open_stream(args: &[&str]) {
    let addr = local(free_port());
    let mut d = daemon(addr, args).await;
    ready(addr).await;
    let mut stream = client::Stream::open(addr, "/v1/stream/tasks").await;
    assert_eq!(stream.status, 200);
    let status = terminate(&mut d, STOP_BOUND)
        .expect("the daemon stops after SIGTERM with a stream client connected");
    assert!(status.success(), "graceful shutdown exits 0: {status}");
    // The stream has ended (cleanly, or with the connection closed): the
    // client is free to resume elsewhere from the last line it read.
    let mut lines = 0;
    loop {
        match stream.try_next_line().await {
            Ok(Some(_)) => lines += 1,
            Ok(None) | Err(_) => break,
        }
        assert!(lines < 10_000, "the stream keeps going after shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_exits_0_on_the_memory_store() {
    sigterm_ends_an_open_stream(&["--simulate", "2"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_and_exits_0_on_etcd() {
    let etcd = EtcdServer::start().await.unwrap();
    sigterm_ends_an_open_stream(&["--simulate", "2", "--etcd-endpoint", &etcd.endpoint()]).await;
}

/// A TCP link to etcd that can go silent, as a partition does: once cut,
/// connections stay open but no byte crosses in either direction.
struct Link {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
}

impl Link {
    async fn to(endpoint: &str) -> Link {
        let upstream = endpoint.trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = watch::channel(false);
        let cut_rx = cut.subscribe();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let cut = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, cut.clone()), pump(sr, cw, cut));
                });
            }
        });
        Link { addr, cut }
    }

    fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }
}

/// Copies `from` to `to` until the link is cut; then holds both open, silent.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, cut: watch::Receiver<bool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if *cut.borrow() {
            std::future::pending::<()>().await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_whose_etcd_stops_answering_stops_within_its_grace() {
    let etcd = EtcdServer::start().await.unwrap();
    let link = Link::to(&etcd.endpoint()).await;
    let addr = local(free_port());
    let mut d = daemon(
        addr,
        &[
            "--simulate",
            "2",
            "--etcd-endpoint",
            &link.endpoint(),
            "--shutdown-grace",
            "2",
        ],
    )
    .await;
    ready(addr).await;
    let _stream = client::Stream::open(addr, "/v1/stream/tasks").await;
    link.cut();
    // Resigning cannot reach etcd: the grace runs out and the daemon exits
    // anyway, with 1 (saying what it could not finish).
    let status = terminate(&mut d, STOP_BOUND).expect("the daemon stops with etcd silent");
    assert_eq!(status.code(), Some(1), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_waiting_for_etcd_answers_ping_and_says_what_it_waits_for() {
    // Nothing listens on this port: the daemon keeps waiting for etcd.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let addr = local(free_port());
    // `daemon` returns once `/v1/ping` answers 200.
    let mut d: Proc = daemon(addr, &["--simulate", "2", "--etcd-endpoint", &nowhere]).await;
    let r = client::get(addr, "/v1/ready").await;
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["ready"], false);
    let waiting: Vec<&str> = body["waitingFor"]
        .as_array()
        .unwrap_or_else(|| panic!("waitingFor lists what is pending: {body}"))
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(waiting.contains(&"store"), "{body}");
    assert!(
        body["checks"]["store"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("etcd")),
        "{body}"
    );
    // The API proper answers 503 (with Retry-After) until the store is there.
    let r = client::get(addr, "/v1/tasks").await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    let status = terminate(&mut d, STOP_BOUND).expect("a daemon waiting for etcd stops");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_lists_every_check_and_nothing_pending_once_ready() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "2"]).await;
    ready(addr).await;
    let body = client::get(addr, "/v1/ready").await.json();
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["waitingFor"], serde_json::json!([]), "{body}");
    for check in ["store", "view", "bootstrap"] {
        assert_eq!(body["checks"][check]["ok"], true, "{check}: {body}");
    }
}
