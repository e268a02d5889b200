//! A minimal HTTP/1.1 client over `tokio::net::TcpStream`: `GET` (and any
//! other method, with an optional JSON body) with `Connection: close`, `Content-Length` or chunked bodies, and streaming
//! reads of chunked newline-delimited JSON.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A generous bound on any single read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A complete response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Asserts an error status with a v0.3 error body (`text/plain`, the
    /// message and a newline); returns the message.
    pub fn error_message(&self, status: u16) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "error content type"
        );
        let text = String::from_utf8(self.body.clone()).expect("error body is UTF-8");
        text.strip_suffix('\n')
            .unwrap_or_else(|| panic!("error body does not end with a newline: {text:?}"))
            .to_owned()
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> BufReader<TcpStream> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => request.push_str("\r\n"),
    }
    tcp.write_all(request.as_bytes()).await.unwrap();
    BufReader::new(tcp)
}

async fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    tokio::time::timeout(READ_TIMEOUT, r.read_line(&mut line))
        .await
        .expect("read timed out")
        .unwrap();
    line.trim_end_matches(['\r', '\n']).to_owned()
}

async fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let status_line = read_line(r).await;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let mut headers = Vec::new();
    loop {
        let line = read_line(r).await;
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':').expect("header line");
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    (status, headers)
}

/// Reads one chunk of a chunked body; `None` at the last chunk.
async fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    try_read_chunk(r).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Reads one chunk; `Ok(None)` at the last chunk, `Err` when the connection
/// ends without one (the server aborted the body).
async fn try_read_chunk(r: &mut BufReader<TcpStream>) -> Result<Option<Vec<u8>>, String> {
    let mut raw = String::new();
    let n = tokio::time::timeout(READ_TIMEOUT, r.read_line(&mut raw))
        .await
        .expect("read timed out")
        .map_err(|e| format!("connection error: {e}"))?;
    if n == 0 {
        return Err("connection closed before the last chunk".into());
    }
    let size_line = raw.trim_end_matches(['\r', '\n']).to_owned();
    let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
        .unwrap_or_else(|_| panic!("bad chunk size {size_line:?}"));
    if size == 0 {
        let _trailer_end = read_line(r).await;
        return Ok(None);
    }
    let mut data = vec![0; size + 2];
    tokio::time::timeout(READ_TIMEOUT, r.read_exact(&mut data))
        .await
        .expect("read timed out")
        .map_err(|e| format!("connection error in a chunk: {e}"))?;
    data.truncate(size);
    Ok(Some(data))
}

/// `GET path` and read the whole response.
pub async fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, None).await
}

/// `method path` with an optional JSON body, and read the whole response.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    request_with(addr, method, path, &[], body).await
}

/// `method path` with extra headers and an optional JSON body.
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Response {
    let mut r = send(addr, method, path, headers, body).await;
    let (status, headers) = read_head(&mut r).await;
    let mut body = Vec::new();
    if header(&headers, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        while let Some(chunk) = read_chunk(&mut r).await {
            body.extend(chunk);
        }
    } else if let Some(len) = header(&headers, "content-length") {
        body.resize(len.parse().unwrap(), 0);
        tokio::time::timeout(READ_TIMEOUT, r.read_exact(&mut body))
            .await
            .expect("read timed out")
            .unwrap();
    } else {
        tokio::time::timeout(READ_TIMEOUT, r.read_to_end(&mut body))
            .await
            .expect("read timed out")
            .unwrap();
    }
    Response {
        status,
        headers,
        body,
    }
}

/// An open streaming response.
pub struct Stream {
    reader: BufReader<TcpStream>,
    /// The status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    pending: Vec<u8>,
}

impl Stream {
    /// Sends `GET path` and reads the response head.
    pub async fn open(addr: SocketAddr, path: &str) -> Stream {
        let mut reader = send(addr, "GET", path, &[], None).await;
        let (status, headers) = read_head(&mut reader).await;
        Stream {
            reader,
            status,
            headers,
            pending: Vec::new(),
        }
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The next line of the body as JSON (waits generously); `None` at a
    /// clean end of the body. Panics if the server aborts the body.
    pub async fn next_line(&mut self) -> Option<Value> {
        self.try_next_line().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// The next line; `Ok(None)` at a clean end, `Err` if the server aborted
    /// the body (closed the connection without the last chunk).
    pub async fn try_next_line(&mut self) -> Result<Option<Value>, String> {
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return Ok(Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    panic!("line is not JSON ({e}): {}", String::from_utf8_lossy(&line))
                })));
            }
            match try_read_chunk(&mut self.reader).await? {
                Some(chunk) => self.pending.extend(chunk),
                None => {
                    assert!(self.pending.is_empty(), "unterminated last line");
                    return Ok(None);
                }
            }
        }
    }
}
