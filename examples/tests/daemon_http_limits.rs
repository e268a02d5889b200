//! The daemon's HTTP server under abuse, as a client meets it: a client
//! that sends its headers slowly is cut off; an idle connection (fresh, or
//! kept alive after a response) is closed; a client that reads nothing of
//! its response is cut off; connections beyond the limit wait until one
//! closes; whole lists beyond the bound and its queue are answered 503; invented HTTP methods add no metric series. The
//! deadlines are generous liveness bounds, not performance figures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{client, daemon, free_port, local, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A generous bound on a close that should come within about a second.
const CLOSE_BOUND: Duration = Duration::from_secs(20);

/// Reads until the server closes the connection (EOF or a reset); whether
/// it did within `bound`.
async fn closed_within(tcp: &mut TcpStream, bound: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(bound, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_headers_slowly_is_cut_off() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "1", "--http-header-timeout", "1"]).await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (mut read, mut write) = tcp.into_split();
    // Trickle a header byte at a time: bytes arriving do not extend the
    // time allowed for the whole head.
    let trickle = tokio::spawn(async move {
        for b in
            b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await;
    });
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(CLOSE_BOUND, async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    trickle.abort();
    assert!(closed, "a slow-header client is cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_fresh_or_kept_alive() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "1", "--http-idle-timeout", "1"]).await;
    // Connected, nothing sent.
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut fresh, CLOSE_BOUND).await,
        "a connection that never sends a request is closed"
    );
    // One request answered, then silence on a kept-alive connection.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut kept, CLOSE_BOUND).await,
        "an idle kept-alive connection is closed"
    );
}

/// A daemon with 6,000 simulated instances, whose instance list (about
/// 7 MB) is more than the socket buffers hold, once ready.
async fn big_daemon(addr: SocketAddr, args: &[&str]) -> support::Proc {
    let args: Vec<&str> = ["--simulate", "6000"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let d = daemon(addr, &args).await;
    wait_for("readiness", Duration::from_secs(120), async || {
        client::get(addr, "/v1/ready").await.status == 200
    })
    .await;
    // Ready is not "every instance is in the view": the instances arrive
    // through the ingester too, and a list of part of them can fit in the
    // socket buffers (with 16 receivers, 640 KB of them did).
    wait_for(
        "all 6,000 instances",
        Duration::from_secs(120),
        async || {
            metric(addr, "blox_cache_entities{kind=\"instance\"}")
                .await
                .as_deref()
                == Some("6000")
        },
    )
    .await;
    d
}

/// Sends `GET path` from a client that reads (almost) nothing of the answer.
async fn stalled_get(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    // A small, fixed receive buffer: the client takes almost nothing.
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = socket.connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    tcp
}

/// The value of a metric line `name value` in `/metrics`.
async fn metric(addr: SocketAddr, name: &str) -> Option<String> {
    let metrics = client::get(addr, "/metrics").await;
    let prefix = format!("{name} ");
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_is_cut_off_after_the_send_timeout() {
    let addr = local(free_port());
    let _d = big_daemon(addr, &["--http-send-timeout", "1"]).await;
    let tcp = stalled_get(addr, "/v1/instances").await;
    // Open: the stalled connection and the scrape's own; then the server
    // gives up on the stalled one.
    let open = "blox_http_open_connections";
    wait_for(
        "the connection to be accepted",
        Duration::from_secs(60),
        async || metric(addr, open).await.as_deref() == Some("2"),
    )
    .await;
    wait_for(
        "the stalled connection to be closed",
        Duration::from_secs(60),
        async || metric(addr, open).await.as_deref() == Some("1"),
    )
    .await;
    drop(tcp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_lists_beyond_the_bound_and_its_queue_get_503() {
    let addr = local(free_port());
    let _d = big_daemon(
        addr,
        &[
            "--max-concurrent-lists",
            "1",
            "--max-queued-lists",
            "0",
            "--http-send-timeout",
            "3600",
        ],
    )
    .await;
    // A whole list whose client reads nothing but its status holds the one
    // turn (once it is answered 200: before, it may itself be refused).
    let mut stalled = stalled_get(addr, "/v1/instances").await;
    let mut status = [0u8; 12];
    stalled.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    wait_for(
        "a second whole list to be refused",
        Duration::from_secs(60),
        async || {
            let r = client::get(addr, "/v1/instances?status=ACTIVE").await;
            r.status == 503 && r.header("retry-after") == Some("1")
        },
    )
    .await;
    // Pages and gets are not bounded.
    assert_eq!(
        client::get(addr, "/v1/instances?maxResults=5").await.status,
        200
    );
    assert_eq!(
        client::get(addr, "/v1/tasks?maxResults=5").await.status,
        200
    );
    assert_eq!(
        metric(addr, "blox_http_lists_refused_total")
            .await
            .as_deref(),
        Some("1")
    );
}

/// Sends `GET /v1/ping` on a new connection; resolves to the response's
/// first 12 bytes (`HTTP/1.1 200`).
async fn ping_on_new_connection(addr: SocketAddr) -> tokio::task::JoinHandle<Vec<u8>> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v1/ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::spawn(async move {
        let mut head = vec![0u8; 12];
        let _ = tcp.read_exact(&mut head).await;
        head
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_until_one_closes() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "1", "--http-max-connections", "2"]).await;
    // Two streams hold the two connections.
    let first = client::Stream::open(addr, "/v1/stream/tasks").await;
    let _second = client::Stream::open(addr, "/v1/stream/tasks").await;
    let waiting = ping_on_new_connection(addr).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection is not served while two are open"
    );
    drop(first);
    let head = tokio::time::timeout(CLOSE_BOUND, waiting)
        .await
        .expect("the waiting connection is served once one closes")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_add_no_metric_series() {
    let addr = local(free_port());
    let _d = daemon(addr, &["--simulate", "1", "--api-token", "s3cret"]).await;
    // `/v1/ping` needs no token: anyone can send these.
    for method in ["INVENTED1", "INVENTED2", "BREW"] {
        let r = client::request(addr, method, "/v1/ping", None).await;
        assert_eq!(r.status, 405, "{method}");
    }
    let metrics = client::request_with(
        addr,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer s3cret")],
        None,
    )
    .await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).unwrap();
    for invented in ["INVENTED1", "INVENTED2", "BREW"] {
        assert!(
            !text.contains(invented),
            "{invented} became a label:\n{text}"
        );
    }
    assert!(
        text.contains(r#"method="other",route="/v1/ping",status="405""#),
        "{text}"
    );
}
