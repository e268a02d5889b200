//! A moto server (the AWS emulator) for one test: started on a free loopback
//! port, killed when dropped (features `testing` and `aws`).
//!
//! The binary is `$BLOX_MOTO_SERVER` if set, else `.venv/bin/moto_server`
//! at the root of this workspace (installed by `scripts/install-deps.sh test`).
//! Tests never fall back to a globally installed copy, so a missing install
//! step shows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
        let bin = std::env::var_os("BLOX_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/moto_server")
            });
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

    /// Creates `cluster`, `n` container instances in it (each on its own EC2
    /// instance) and the task definition `web:1` (128 CPU, 256 MiB);
    /// returns the instances' ARNs and EC2 ids.
    pub async fn ecs_cluster_with_instances(
        &self,
        cluster: &str,
        n: usize,
    ) -> Vec<(crate::model::Arn, String)> {
        use aws_sdk_ecs::types::ContainerDefinition;
        let ecs = aws_sdk_ecs::Client::new(&self.sdk_config());
        ecs.create_cluster()
            .cluster_name(cluster)
            .send()
            .await
            .unwrap();
        let mut instances = Vec::new();
        for _ in 0..n {
            let ec2_id = self.run_ec2_instance().await;
            let out = ecs
                .register_container_instance()
                .cluster(cluster)
                .instance_identity_document(format!(r#"{{"instanceId":"{ec2_id}"}}"#))
                .send()
                .await
                .unwrap();
            let arn = out
                .container_instance()
                .and_then(|ci| ci.container_instance_arn())
                .unwrap();
            instances.push((crate::model::Arn::parse(arn).unwrap(), ec2_id));
        }
        ecs.register_task_definition()
            .family("web")
            .container_definitions(
                ContainerDefinition::builder()
                    .name("web")
                    .image("nginx:1.25")
                    .cpu(128)
                    .memory(256)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        instances
    }

    /// Creates an SQS queue; returns its URL.
    pub async fn create_queue(&self, name: &str, visibility_timeout_secs: u32) -> String {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config());
        let out = sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .send()
            .await
            .unwrap();
        out.queue_url().unwrap().to_owned()
    }

    /// Sends a message to a queue.
    pub async fn send_message(&self, queue_url: &str, body: &str) {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config());
        sqs.send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// Messages in a queue, visible and in flight (SQS's approximate counts).
    pub async fn queue_depth(&self, queue_url: &str) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let sqs = aws_sdk_sqs::Client::new(&self.sdk_config());
        let out = sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|k| {
            attrs
                .get(k)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        })
        .sum()
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
