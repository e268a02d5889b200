//! Throwaway etcd servers for tests and benchmarks: one member
//! ([`EtcdServer`]) or a cluster ([`EtcdCluster`]) on free loopback ports,
//! with data in a temporary directory (under `/dev/shm` when it exists, so
//! fsyncs are cheap; set `BLOX_TEST_ETCD_DIR` to choose another place, e.g.
//! a disk to measure with real fsyncs), killed when dropped. Data of a
//! server that is never dropped (kept in a `static`) is removed by its
//! watchdog when the test process exits.
//!
//! Needs the `etcd` and `etcdctl` binaries (etcd 3.4 or later) on `PATH`:
//! run `scripts/install-deps.sh test`.
//!
//! Each member runs under a small shell watchdog that kills it when the
//! test process exits, so a server kept in a `static` does not outlive the
//! test binary.
//!
//! ```no_run
//! # async fn demo() -> Result<(), blox_state::testing::etcd_server::EtcdServerError> {
//! use blox_state::testing::etcd_server::EtcdServer;
//! let server = EtcdServer::start().await?;
//! println!("etcd at {}", server.endpoint());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a member (or a cluster) may take to become healthy.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EtcdServerError {
    /// The `etcd` or `etcdctl` binary is not installed.
    #[error("`{0}` not found on PATH: run `scripts/install-deps.sh test` to install etcd")]
    NotInstalled(&'static str),
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The member exited or did not become healthy in time.
    #[error("etcd did not become healthy: {0}")]
    NotReady(String),
    /// No such member.
    #[error("no member {0} in this cluster")]
    NoSuchMember(usize),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EtcdServerError {
    let what = what.into();
    move |source| EtcdServerError::Io { what, source }
}

/// A free TCP port on 127.0.0.1 (free when asked; etcd binds it soon after).
fn free_port() -> Result<u16, EtcdServerError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("binding a free port"))?;
    Ok(l.local_addr().map_err(io("reading a port"))?.port())
}

fn installed(binary: &'static str) -> Result<(), EtcdServerError> {
    match Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(EtcdServerError::NotInstalled(binary))
        }
        Err(e) => Err(io(format!("running {binary}"))(e)),
    }
}

/// The variable naming the directory for members' data (default `/dev/shm`
/// when it exists, else the system's temporary directory).
pub const DATA_DIR_VAR: &str = "BLOX_TEST_ETCD_DIR";

/// A data directory under `parent`, else under [`DATA_DIR_VAR`], else
/// `/dev/shm`, else the system's temporary directory.
fn temp_dir(parent: Option<&Path>) -> Result<tempfile::TempDir, EtcdServerError> {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("blox-etcd-");
        b
    };
    if let Some(dir) = parent {
        return builder
            .tempdir_in(dir)
            .map_err(io(format!("creating a data directory in {dir:?}")));
    }
    if let Some(dir) = std::env::var_os(DATA_DIR_VAR) {
        return builder.tempdir_in(&dir).map_err(io(format!(
            "creating a data directory in {dir:?} ({DATA_DIR_VAR})"
        )));
    }
    if shm.is_dir()
        && let Ok(d) = builder.tempdir_in(shm)
    {
        return Ok(d);
    }
    builder.tempdir().map_err(io("creating a data directory"))
}

/// One member's configuration.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Member {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// Starts the member under a watchdog shell in its own process group.
    fn spawn(&self, initial_cluster: &str, token: &str) -> Result<Child, EtcdServerError> {
        use std::os::unix::process::CommandExt;
        // The watchdog kills etcd when the test process (our pid) is gone.
        let script = r#"etcd "$@" >>"$BLOX_ETCD_LOG" 2>&1 &
child=$!
trap 'kill -9 $child 2>/dev/null; exit 0' TERM INT
while kill -0 "$BLOX_PARENT" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5; done
kill -9 $child 2>/dev/null
wait $child 2>/dev/null
# The test process is gone (a server kept in a `static` is never dropped):
# remove the data it cannot remove itself.
if ! kill -0 "$BLOX_PARENT" 2>/dev/null; then
  rm -rf "$BLOX_ETCD_DATA" "$BLOX_ETCD_LOG"
  rmdir "$(dirname "$BLOX_ETCD_DATA")" 2>/dev/null
fi
"#;
        let client = self.endpoint();
        let peer = self.peer_url();
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("etcd-watchdog")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-token", token])
            .args(["--initial-cluster-state", "new"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .env("BLOX_ETCD_LOG", &self.log)
            .env("BLOX_ETCD_DATA", &self.data_dir)
            .env("BLOX_PARENT", std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io("starting etcd"))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Kills a member's process group (watchdog and etcd) and reaps it.
fn kill(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-9", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether every endpoint reports healthy.
async fn healthy(endpoints: &[String]) -> bool {
    let out = tokio::process::Command::new("etcdctl")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args([
            "--command-timeout=2s",
            "--dial-timeout=2s",
            "endpoint",
            "health",
        ])
        .env("ETCDCTL_API", "3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    matches!(out, Ok(s) if s.success())
}

/// Waits until `members` are healthy, failing early if one exits.
async fn wait_ready(
    members: &[Member],
    children: &mut [Option<Child>],
) -> Result<(), EtcdServerError> {
    let endpoints: Vec<String> = members.iter().map(Member::endpoint).collect();
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if healthy(&endpoints).await {
            return Ok(());
        }
        for (m, c) in members.iter().zip(children.iter_mut()) {
            if let Some(child) = c
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(EtcdServerError::NotReady(format!(
                    "member {} exited ({status}); log:\n{}",
                    m.name,
                    m.log_tail()
                )));
            }
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| format!("{}:\n{}", m.name, m.log_tail()))
                .collect();
            return Err(EtcdServerError::NotReady(format!(
                "not healthy after {READY_DEADLINE:?}; logs:\n{}",
                logs.join("\n")
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A cluster of etcd members on loopback ports.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    children: Vec<Option<Child>>,
    initial_cluster: String,
    token: String,
    _dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until all are healthy.
    pub async fn start(size: usize) -> Result<EtcdCluster, EtcdServerError> {
        EtcdCluster::start_with(size, None).await
    }

    /// Starts `size` members with their data in a new directory under
    /// `parent` (e.g. on a disk rather than in memory, to measure with real
    /// fsyncs) and waits until all are healthy.
    pub async fn start_in(size: usize, parent: &Path) -> Result<EtcdCluster, EtcdServerError> {
        EtcdCluster::start_with(size, Some(parent)).await
    }

    /// Starts the members, on fresh ports again when a port picked as free
    /// was taken by another process before etcd bound it (tests start
    /// servers in parallel).
    async fn start_with(
        size: usize,
        parent: Option<&Path>,
    ) -> Result<EtcdCluster, EtcdServerError> {
        let mut attempt = 1;
        loop {
            match EtcdCluster::start_once(size, parent).await {
                Err(EtcdServerError::NotReady(log))
                    if attempt < 3 && log.contains("address already in use") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(
        size: usize,
        parent: Option<&Path>,
    ) -> Result<EtcdCluster, EtcdServerError> {
        installed("etcd")?;
        installed("etcdctl")?;
        let dir = temp_dir(parent)?;
        let mut members = Vec::with_capacity(size);
        for i in 0..size.max(1) {
            let name = format!("n{}", i + 1);
            members.push(Member {
                data_dir: dir.path().join(format!("{name}.etcd")),
                log: dir.path().join(format!("{name}.log")),
                name,
                client_port: free_port()?,
                peer_port: free_port()?,
            });
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("blox-test-{}", members[0].client_port);
        let mut cluster = EtcdCluster {
            children: Vec::with_capacity(members.len()),
            members,
            initial_cluster,
            token,
            _dir: dir,
        };
        for m in &cluster.members {
            let child = m.spawn(&cluster.initial_cluster, &cluster.token)?;
            cluster.children.push(Some(child));
        }
        wait_ready(&cluster.members, &mut cluster.children).await?;
        Ok(cluster)
    }

    /// The client URLs of every member (`http://127.0.0.1:PORT`), running
    /// or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> Option<String> {
        self.members.get(i).map(Member::endpoint)
    }

    /// How many members the cluster has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether the cluster has no members (never true).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `i` (SIGKILL), keeping its data for [`EtcdCluster::restart`].
    pub fn kill(&mut self, i: usize) -> Result<(), EtcdServerError> {
        let child = self
            .children
            .get_mut(i)
            .ok_or(EtcdServerError::NoSuchMember(i))?;
        if let Some(mut c) = child.take() {
            kill(&mut c);
        }
        Ok(())
    }

    /// Restarts member `i` on its data and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) -> Result<(), EtcdServerError> {
        self.restart_together(&[i]).await
    }

    /// Restarts members on their data all at once, then waits until they
    /// are healthy: a cluster that lost its quorum is healthy again only
    /// once enough of them are back, so they cannot wait one by one.
    pub async fn restart_together(&mut self, members: &[usize]) -> Result<(), EtcdServerError> {
        let mut started = Vec::with_capacity(members.len());
        for &i in members {
            self.kill(i)?;
            let m = self
                .members
                .get(i)
                .ok_or(EtcdServerError::NoSuchMember(i))?
                .clone();
            self.children[i] = Some(m.spawn(&self.initial_cluster, &self.token)?);
            started.push(m);
        }
        let mut children: Vec<Option<Child>> =
            members.iter().map(|&i| self.children[i].take()).collect();
        let r = wait_ready(&started, &mut children).await;
        for (&i, c) in members.iter().zip(children) {
            self.children[i] = c;
        }
        r
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            if let Some(mut child) = c.take() {
                kill(&mut child);
            }
        }
    }
}

/// A single-member etcd on loopback ports, killed on drop.
#[derive(Debug)]
pub struct EtcdServer {
    cluster: EtcdCluster,
}

impl EtcdServer {
    /// Starts a member and waits until it is healthy.
    pub async fn start() -> Result<EtcdServer, EtcdServerError> {
        Ok(EtcdServer {
            cluster: EtcdCluster::start(1).await?,
        })
    }

    /// Starts a member with its data in a new directory under `parent` and
    /// waits until it is healthy.
    pub async fn start_in(parent: &Path) -> Result<EtcdServer, EtcdServerError> {
        Ok(EtcdServer {
            cluster: EtcdCluster::start_in(1, parent).await?,
        })
    }

    /// The client URL (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> String {
        self.cluster.endpoints().remove(0)
    }

    /// The member's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.cluster.members[0].data_dir
    }
}
