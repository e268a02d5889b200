//! A moto server for one test: started from the workspace's `.venv` on a free
//! loopback port, killed when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A running moto server.
pub struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    /// Starts `<workspace>/.venv/bin/moto_server` on a free port and waits
    /// until it answers.
    pub async fn start() -> Moto {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = root.join(".venv/bin/moto_server");
        assert!(
            bin.exists(),
            "{} is missing: run `bash scripts/install-deps.sh test` at the workspace root",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut moto = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = moto.request("GET", "/moto-api/", None, &[], "").await {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited early with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An SDK configuration pointing at this server, with dummy static
    /// credentials (moto does not check signatures) and no environment lookups.
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .endpoint_url(self.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "AKIDTEST",
                "secret",
                None,
                None,
                "moto-test",
            )))
            .behavior_version(BehaviorVersion::latest())
            .build()
    }

    /// One raw HTTP/1.1 request; returns the status and body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        stream.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((status, body))
    }

    /// Creates an EC2 instance in moto (ECS needs one per registered
    /// container instance) through the EC2 query API; returns its id.
    pub async fn run_ec2_instance(&self) -> String {
        let (status, body) = self
            .request(
                "POST",
                "/",
                Some("application/x-www-form-urlencoded"),
                // moto routes by the service in the credential scope; it does
                // not check the signature.
                &[(
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIDTEST/20250101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
                )],
                "Action=RunInstances&ImageId=ami-12345678&MinCount=1&MaxCount=1&Version=2016-11-15",
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "RunInstances failed: {body}");
        let start = body.find("<instanceId>").expect("no instanceId") + "<instanceId>".len();
        let end = start + body[start..].find('<').unwrap();
        body[start..end].to_owned()
    }

    /// Stops moto's ECS tasks from advancing their status on every
    /// DescribeTasks (they stay as StartTask left them until stopped).
    pub async fn freeze_task_status(&self) {
        let (status, body) = self
            .request(
                "POST",
                "/moto-api/state-manager/set-transition",
                Some("application/json"),
                &[],
                r#"{"model_name":"ecs::task","transition":{"progression":"manual","times":1000000}}"#,
            )
            .await
            .unwrap();
        assert!(status < 300, "set-transition failed: {status} {body}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
