//! [`EnvironmentStore`]: environments and deployments persisted through the
//! state store's key-value API (etcd and memory alike), every update a
//! compare-and-swap.
//!
//! Keys (JSON values): `daemon/environments/{name}` and
//! `daemon/deployments/{environment}/{id}`. Names are validated to
//! `[a-zA-Z0-9-_]` and ids are generated, so keys need no escaping.
//!
//! # Deployment tokens
//! As in Blox v0.3, creating an environment does not deploy: a client posts a
//! deployment with the environment's current `deploymentToken`. The token
//! changes whenever the task definition changes **and** when a deployment is
//! created, so a retried or stale request cannot deploy twice or deploy a
//! version the client has not seen; every change can be deployed.
//!
//! ```
//! use std::sync::Arc;
//! use blox_sched::daemon::{DeploymentStatus, EnvironmentStore, NewEnvironment};
//! use blox_state::store::memory::MemoryStore;
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let envs = EnvironmentStore::new(Arc::new(MemoryStore::new()));
//! let env = envs.create(NewEnvironment::new("logs", "prod", "logs:1")).await?;
//! assert!(env.active_deployment.is_none()); // creating does not deploy
//! let dep = envs.create_deployment("logs", &env.deployment_token).await?;
//! assert_eq!(dep.status, DeploymentStatus::Pending);
//! // The token was used: a retry is rejected instead of deploying twice.
//! assert!(envs.create_deployment("logs", &env.deployment_token).await.is_err());
//! # Ok::<(), blox_sched::daemon::EnvironmentError>(())
//! # }).unwrap();
//! ```

use blox_core::clock::SharedClock;
use std::sync::Arc;

use blox_state::store::{
    KvEntry, KvExpect, KvOp, KvTxn, KvTxnOutcome, Revision, StateStore, StoreError,
};
use bytes::Bytes;

use super::model::{
    DaemonDesired, Deployment, DrainingPolicy, Environment, EnvironmentState, InstanceSelector,
    same_cluster,
};
use super::validate::{self, ValidationError};
use crate::scheduler::{DesiredError, DesiredSource};

/// How many times a compare-and-swap is retried after losing a race.
const CAS_ATTEMPTS: usize = 16;

/// An error of an environment or deployment operation.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    /// The request is invalid (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// An environment of that name exists (HTTP 400, as in v0.3).
    #[error("Environment {0} already exists")]
    AlreadyExists(String),
    /// No such environment (HTTP 404; v0.3's text).
    #[error("Environment {0} does not exist")]
    NotFound(String),
    /// The environment is being deleted (its tasks are being stopped) (HTTP
    /// 400, as for one that exists).
    #[error(
        "Environment {0} already exists: it is being deleted; wait until its tasks are stopped"
    )]
    BeingDeleted(String),
    /// The deployment token is not the environment's current one (HTTP 400, as in v0.3).
    #[error(
        "deployment token for environment {environment:?} is not current: get the environment and use its deploymentToken"
    )]
    StaleToken {
        /// The environment.
        environment: String,
    },
    /// No such deployment (HTTP 404; v0.3's text).
    #[error("Deployment {id} does not exist for environment {environment}")]
    DeploymentNotFound {
        /// The environment.
        environment: String,
        /// The deployment id.
        id: String,
    },
    /// Concurrent writers kept changing the key (HTTP 409; retry).
    #[error("too many concurrent updates of {0:?}; retry")]
    Contended(String),
    /// A stored value is not valid JSON of the expected shape (HTTP 500).
    #[error("corrupt value at key {key:?}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// The state store failed (HTTP 503 when unavailable, else 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A write fenced by the leader key was refused: the writer no longer
    /// leads (the deployment tracker; HTTP 409 if it ever reached one).
    #[error("not written: the leader key changed")]
    Fenced,
}

/// A coarse classification of [`EnvironmentError`], for HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request is wrong (400).
    BadRequest,
    /// Something does not exist (404).
    NotFound,
    /// Concurrent writers kept winning; retry (409).
    Conflict,
    /// The store is unreachable (503).
    Unavailable,
    /// Anything else (500).
    Internal,
}

impl EnvironmentError {
    /// How an HTTP layer should report this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            EnvironmentError::Invalid(_)
            | EnvironmentError::StaleToken { .. }
            | EnvironmentError::AlreadyExists(_)
            | EnvironmentError::BeingDeleted(_) => ErrorClass::BadRequest,
            EnvironmentError::NotFound(_) | EnvironmentError::DeploymentNotFound { .. } => {
                ErrorClass::NotFound
            }
            EnvironmentError::Contended(_) | EnvironmentError::Fenced => ErrorClass::Conflict,
            EnvironmentError::Store(e) if e.is_unavailable() => ErrorClass::Unavailable,
            EnvironmentError::Store(_) | EnvironmentError::Corrupt { .. } => ErrorClass::Internal,
        }
    }
}

/// Results of environment operations.
pub type Result<T, E = EnvironmentError> = std::result::Result<T, E>;

/// Preconditions a write must also meet (the leader key's
/// [`LeaderTerm::check`](crate::election::LeaderTerm::check) for the
/// deployment tracker; none for the HTTP API).
pub(crate) type Fence = [(String, KvExpect)];

/// A request to create an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvironment {
    /// The name.
    pub name: String,
    /// The cluster, by name or ARN.
    pub cluster: String,
    /// The task definition.
    pub task_definition: String,
    /// Attribute conditions on instances.
    pub selector: InstanceSelector,
    /// Draining policy.
    pub draining_policy: DrainingPolicy,
    /// Rollout bound (at least 1).
    pub max_unavailable: u32,
}

impl NewEnvironment {
    /// A request with default settings.
    pub fn new(
        name: impl Into<String>,
        cluster: impl Into<String>,
        task_definition: impl Into<String>,
    ) -> Self {
        NewEnvironment {
            name: name.into(),
            cluster: cluster.into(),
            task_definition: task_definition.into(),
            selector: InstanceSelector::all(),
            draining_policy: DrainingPolicy::default(),
            max_unavailable: 1,
        }
    }

    /// Sets the instance selector.
    pub fn selector(mut self, selector: InstanceSelector) -> Self {
        self.selector = selector;
        self
    }

    /// Sets the draining policy.
    pub fn draining_policy(mut self, policy: DrainingPolicy) -> Self {
        self.draining_policy = policy;
        self
    }

    /// Sets the rollout bound.
    pub fn max_unavailable(mut self, n: u32) -> Self {
        self.max_unavailable = n;
        self
    }

    /// Checks the request as [`EnvironmentStore::create`] does (name,
    /// cluster, task definition, selector, rollout bound), without the store.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate::environment_name(&self.name)?;
        validate::cluster(&self.cluster)?;
        validate::task_definition(&self.task_definition)?;
        validate::selector(&self.selector)?;
        validate::rollout_bound(self.max_unavailable)
    }
}

/// A change to an environment: each field given replaces the current
/// setting. A new task definition is rolled out by the next deployment;
/// the selector, draining policy and rollout bound apply at once (an
/// instance that stops matching the selector has its daemon task stopped).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentUpdate {
    /// The task definition of the next deployment.
    pub task_definition: Option<String>,
    /// Attribute conditions on instances.
    pub selector: Option<InstanceSelector>,
    /// Draining policy.
    pub draining_policy: Option<DrainingPolicy>,
    /// Rollout bound (at least 1).
    pub max_unavailable: Option<u32>,
    /// The cluster the caller takes the environment to run on (name or
    /// ARN): another one is refused, as an environment cannot move. Not a
    /// change by itself.
    pub cluster: Option<String>,
}

impl EnvironmentUpdate {
    /// Sets the task definition.
    pub fn task_definition(mut self, td: impl Into<String>) -> Self {
        self.task_definition = Some(td.into());
        self
    }

    /// Sets the instance selector.
    pub fn selector(mut self, selector: InstanceSelector) -> Self {
        self.selector = Some(selector);
        self
    }

    /// Sets the draining policy.
    pub fn draining_policy(mut self, policy: DrainingPolicy) -> Self {
        self.draining_policy = Some(policy);
        self
    }

    /// Sets the rollout bound.
    pub fn max_unavailable(mut self, n: u32) -> Self {
        self.max_unavailable = Some(n);
        self
    }

    fn validate(&self) -> Result<(), ValidationError> {
        // The cluster only confirms where the environment runs.
        if self.task_definition.is_none()
            && self.selector.is_none()
            && self.draining_policy.is_none()
            && self.max_unavailable.is_none()
        {
            return Err(ValidationError::NothingToUpdate);
        }
        if let Some(td) = &self.task_definition {
            validate::task_definition(td)?;
        }
        if let Some(sel) = &self.selector {
            validate::selector(sel)?;
        }
        if let Some(n) = self.max_unavailable {
            validate::rollout_bound(n)?;
        }
        Ok(())
    }

    fn apply(&self, env: &mut Environment) -> Result<(), ValidationError> {
        if let Some(cluster) = &self.cluster
            && !same_cluster(cluster, env.cluster())
        {
            return Err(ValidationError::ClusterChange {
                current: env.cluster().to_owned(),
                requested: cluster.clone(),
            });
        }
        if let Some(td) = &self.task_definition {
            env.task_definition.clone_from(td);
        }
        if let Some(sel) = &self.selector {
            env.instance_group.attributes = sel.clone();
        }
        if let Some(p) = self.draining_policy {
            env.draining_policy = p;
        }
        if let Some(n) = self.max_unavailable {
            env.max_unavailable = n;
        }
        Ok(())
    }
}

/// A random token (32 hex digits).
fn new_token() -> String {
    let mut b = [0u8; 16];
    blox_core::random::with_rng(|r| r.fill_bytes(&mut b));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A random deployment id in the UUID v4 format (36 characters: fits ECS's
/// `startedBy` limit).
pub fn new_deployment_id() -> String {
    let mut b = [0u8; 16];
    blox_core::random::with_rng(|r| r.fill_bytes(&mut b));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Environments and deployments over a [`StateStore`]'s key-value API.
#[derive(Clone)]
pub struct EnvironmentStore {
    store: Arc<dyn StateStore>,
    clock: SharedClock,
}

impl std::fmt::Debug for EnvironmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvironmentStore").finish_non_exhaustive()
    }
}

const ROOT: &str = "daemon/";
const ENVS: &str = "daemon/environments/";
const DEPS: &str = "daemon/deployments/";

fn env_key(name: &str) -> String {
    format!("{ENVS}{name}")
}

fn dep_prefix(env: &str) -> String {
    format!("{DEPS}{env}/")
}

fn dep_key(env: &str, id: &str) -> String {
    format!("{DEPS}{env}/{id}")
}

fn decode<T: serde::de::DeserializeOwned>(e: &KvEntry) -> Result<T> {
    serde_json::from_slice(&e.value).map_err(|source| EnvironmentError::Corrupt {
        key: e.key.clone(),
        source,
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Bytes {
    // Serializing these plain structs cannot fail (no maps with non-string keys).
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl EnvironmentStore {
    /// Environments and deployments in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        EnvironmentStore {
            store,
            clock: blox_core::clock::system(),
        }
    }

    /// Takes the times it records (creation, updates, deployment progress)
    /// from `clock` instead of the wall clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock of the times it records.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    async fn read_env(&self, name: &str) -> Result<Option<(Environment, Revision)>> {
        match self.store.kv_get(&env_key(name)).await? {
            Some(e) => Ok(Some((decode(&e)?, e.revision))),
            None => Ok(None),
        }
    }

    /// The environment (with its revision), if it exists and is not being deleted.
    async fn read_visible(&self, name: &str) -> Result<(Environment, Revision)> {
        validate::environment_name(name).map_err(|_| EnvironmentError::NotFound(name.into()))?;
        match self.read_env(name).await? {
            Some((env, _)) if env.deleting => Err(EnvironmentError::NotFound(name.into())),
            Some(x) => Ok(x),
            None => Err(EnvironmentError::NotFound(name.into())),
        }
    }

    /// Creates an environment. It does **not** deploy: post a deployment with
    /// its `deployment_token` for that.
    pub async fn create(&self, req: NewEnvironment) -> Result<Environment> {
        req.validate()?;
        let mut env = Environment::new(
            req.name,
            req.cluster,
            req.task_definition,
            new_token(),
            self.clock.now(),
        );
        env.instance_group.attributes = req.selector;
        env.draining_policy = req.draining_policy;
        env.max_unavailable = req.max_unavailable;
        let key = env_key(&env.name);
        match self
            .store
            .kv_put(&key, encode(&env), Some(KvExpect::Absent))
            .await?
        {
            KvTxnOutcome::Applied(_) => Ok(env),
            KvTxnOutcome::Conflict => match self.read_env(&env.name).await? {
                Some((old, _)) if old.deleting => Err(EnvironmentError::BeingDeleted(env.name)),
                _ => Err(EnvironmentError::AlreadyExists(env.name)),
            },
        }
    }

    /// The environment `name` (not one being deleted).
    pub async fn get(&self, name: &str) -> Result<Environment> {
        Ok(self.read_visible(name).await?.0)
    }

    /// Every environment (not those being deleted), by name.
    pub async fn list(&self) -> Result<Vec<Environment>> {
        let listing = self.store.kv_list(ENVS).await?;
        let mut out = Vec::with_capacity(listing.items.len());
        for e in &listing.items {
            let env: Environment = decode(e)?;
            if !env.deleting {
                out.push(env);
            }
        }
        Ok(out)
    }

    /// Changes the task definition, issuing a new deployment token (deploy
    /// the change with a deployment).
    pub async fn update_task_definition(
        &self,
        name: &str,
        task_definition: &str,
    ) -> Result<Environment> {
        self.update(
            name,
            EnvironmentUpdate::default().task_definition(task_definition),
        )
        .await
    }

    /// Changes an environment's settings (see [`EnvironmentUpdate`]),
    /// issuing a new deployment token. An update that gives nothing is
    /// refused.
    pub async fn update(&self, name: &str, update: EnvironmentUpdate) -> Result<Environment> {
        update.validate()?;
        self.update_env(name, |env| Ok(update.apply(env)?)).await
    }

    /// Read-modify-write of a visible environment by compare-and-swap; every
    /// update issues a new token.
    async fn update_env(
        &self,
        name: &str,
        mut f: impl FnMut(&mut Environment) -> Result<()>,
    ) -> Result<Environment> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut env, rev) = self.read_visible(name).await?;
            f(&mut env)?;
            env.deployment_token = new_token();
            env.updated_at = self.clock.now();
            let out = self
                .store
                .kv_put(&env_key(name), encode(&env), Some(KvExpect::Revision(rev)))
                .await?;
            if let KvTxnOutcome::Applied(_) = out {
                return Ok(env);
            }
        }
        Err(EnvironmentError::Contended(env_key(name)))
    }

    /// Deletes an environment. With `stop_tasks`, it is only marked deleted
    /// (hidden from get and list) until the daemon scheduler has stopped its
    /// tasks, then removed by the [`DeploymentTracker`](super::DeploymentTracker);
    /// without, it and its deployments are removed now and its tasks are left
    /// running.
    pub async fn delete(&self, name: &str, stop_tasks: bool) -> Result<()> {
        if stop_tasks {
            self.update_env(name, |env| {
                env.deleting = true;
                Ok(())
            })
            .await
            .map(|_| ())
        } else {
            self.read_visible(name).await?;
            self.purge(name, &[]).await
        }
    }

    /// Removes an environment and its deployments, whatever their state.
    pub(crate) async fn purge(&self, name: &str, fence: &Fence) -> Result<()> {
        let deps = self.store.kv_list(&dep_prefix(name)).await?;
        // One transaction when it fits (the environment's delete first, as
        // streams have always shown it). Otherwise the deployments first
        // and the environment last, in as many transactions as the store's
        // limits need: a crash in between leaves the environment, and
        // purging it again finishes the job.
        let mut ops: Vec<KvOp> = deps
            .items
            .into_iter()
            .map(|e| KvOp::Delete { key: e.key })
            .collect();
        let env = KvOp::Delete { key: env_key(name) };
        if ops.len() < self.store.txn_limits().max_ops {
            ops.insert(0, env);
        } else {
            ops.push(env);
        }
        let outcome = self
            .store
            .kv_txn_chunked(KvTxn {
                checks: fence.to_vec(),
                ops,
            })
            .await?;
        if outcome == KvTxnOutcome::Conflict && !fence.is_empty() {
            return Err(EnvironmentError::Fenced);
        }
        Ok(())
    }

    /// Creates a deployment of the environment's current task definition,
    /// given its current deployment token (a wrong or old token is
    /// rejected). The deployment becomes the active one and the environment
    /// gets a new token.
    pub async fn create_deployment(&self, name: &str, token: &str) -> Result<Deployment> {
        for _ in 0..CAS_ATTEMPTS {
            let (mut env, env_rev) = self.read_visible(name).await?;
            if env.deployment_token != token {
                return Err(EnvironmentError::StaleToken {
                    environment: name.into(),
                });
            }
            let now = self.clock.now();
            let mut dep =
                Deployment::new(new_deployment_id(), name, env.task_definition.clone(), now);
            env.deployment_count += 1;
            dep.sequence = env.deployment_count;
            let mut checks = vec![
                (env_key(name), KvExpect::Revision(env_rev)),
                (dep_key(name, &dep.id), KvExpect::Absent),
            ];
            let mut ops = Vec::with_capacity(3);
            if let Some(old_id) = env.active_deployment.clone() {
                let old_key = dep_key(name, &old_id);
                if let Some(entry) = self.store.kv_get(&old_key).await? {
                    let mut old: Deployment = decode(&entry)?;
                    old.superseded_by = Some(dep.id.clone());
                    old.updated_at = now;
                    checks.push((old_key.clone(), KvExpect::Revision(entry.revision)));
                    ops.push(KvOp::Put {
                        key: old_key,
                        value: encode(&old),
                    });
                }
            }
            env.active_deployment = Some(dep.id.clone());
            env.deployment_token = new_token();
            env.updated_at = now;
            ops.push(KvOp::Put {
                key: env_key(name),
                value: encode(&env),
            });
            ops.push(KvOp::Put {
                key: dep_key(name, &dep.id),
                value: encode(&dep),
            });
            if let KvTxnOutcome::Applied(_) = self.store.kv_txn(KvTxn { checks, ops }).await? {
                return Ok(dep);
            }
        }
        Err(EnvironmentError::Contended(env_key(name)))
    }

    /// A deployment of an environment.
    pub async fn get_deployment(&self, name: &str, id: &str) -> Result<Deployment> {
        self.read_visible(name).await?;
        let not_found = || EnvironmentError::DeploymentNotFound {
            environment: name.into(),
            id: id.into(),
        };
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(not_found());
        }
        match self.store.kv_get(&dep_key(name, id)).await? {
            Some(e) => decode(&e),
            None => Err(not_found()),
        }
    }

    /// Every deployment of an environment, oldest first.
    pub async fn list_deployments(&self, name: &str) -> Result<Vec<Deployment>> {
        self.read_visible(name).await?;
        let listing = self.store.kv_list(&dep_prefix(name)).await?;
        let mut out: Vec<Deployment> = listing.items.iter().map(decode).collect::<Result<_>>()?;
        sort_deployments(&mut out);
        Ok(out)
    }

    /// Removes a deployment if it has been superseded (the active one, and
    /// one superseded meanwhile by nothing, are kept). Returns whether it
    /// was removed.
    pub(crate) async fn remove_superseded_deployment(
        &self,
        name: &str,
        id: &str,
        fence: &Fence,
    ) -> Result<bool> {
        let key = dep_key(name, id);
        let Some(entry) = self.store.kv_get(&key).await? else {
            return Ok(false);
        };
        let dep: Deployment = decode(&entry)?;
        if dep.superseded_by.is_none() {
            return Ok(false);
        }
        let out = self
            .fenced_txn(
                fence,
                (key.clone(), KvExpect::Revision(entry.revision)),
                KvOp::Delete { key },
            )
            .await?;
        Ok(matches!(out, KvTxnOutcome::Applied(_)))
    }

    /// One write under `fence` and the key's own precondition; a conflict
    /// of the fence is [`EnvironmentError::Fenced`], one of the key is
    /// returned for the caller to retry or give up.
    async fn fenced_txn(
        &self,
        fence: &Fence,
        check: (String, KvExpect),
        op: KvOp,
    ) -> Result<KvTxnOutcome> {
        let mut checks = fence.to_vec();
        checks.push(check);
        let out = self
            .store
            .kv_txn(KvTxn {
                checks,
                ops: vec![op],
            })
            .await?;
        if out == KvTxnOutcome::Conflict && !fence.is_empty() {
            let holds = self
                .store
                .kv_txn(KvTxn {
                    checks: fence.to_vec(),
                    ops: Vec::new(),
                })
                .await?;
            if holds == KvTxnOutcome::Conflict {
                return Err(EnvironmentError::Fenced);
            }
        }
        Ok(out)
    }

    /// Read-modify-write of a deployment by compare-and-swap. `f` returns
    /// whether it changed anything (nothing is written otherwise). Returns
    /// the stored deployment, or `None` if it no longer exists.
    pub(crate) async fn update_deployment(
        &self,
        env: &str,
        id: &str,
        fence: &Fence,
        mut f: impl FnMut(&mut Deployment) -> bool,
    ) -> Result<Option<Deployment>> {
        let key = dep_key(env, id);
        for _ in 0..CAS_ATTEMPTS {
            let Some(entry) = self.store.kv_get(&key).await? else {
                return Ok(None);
            };
            let mut dep: Deployment = decode(&entry)?;
            if !f(&mut dep) {
                return Ok(Some(dep));
            }
            dep.updated_at = self.clock.now();
            let out = self
                .fenced_txn(
                    fence,
                    (key.clone(), KvExpect::Revision(entry.revision)),
                    KvOp::Put {
                        key: key.clone(),
                        value: encode(&dep),
                    },
                )
                .await?;
            if let KvTxnOutcome::Applied(_) = out {
                return Ok(Some(dep));
            }
        }
        Err(EnvironmentError::Contended(key))
    }

    /// Every environment (those being deleted included) with its deployments,
    /// read at one revision: the daemon scheduler's desired state. A value
    /// that cannot be decoded is logged and skipped, so one bad key cannot
    /// stop scheduling of the others.
    pub async fn load(&self) -> Result<DaemonDesired> {
        let listing = self.store.kv_list(ROOT).await?;
        let mut envs: Vec<EnvironmentState> = Vec::new();
        let mut deps: Vec<Deployment> = Vec::new();
        for e in &listing.items {
            if e.key.starts_with(ENVS) {
                match decode::<Environment>(e) {
                    Ok(environment) => envs.push(EnvironmentState {
                        environment,
                        deployments: Vec::new(),
                    }),
                    Err(err) => {
                        tracing::warn!(key = %e.key, error = %err, "skipping corrupt environment")
                    }
                }
            } else if e.key.starts_with(DEPS) {
                match decode::<Deployment>(e) {
                    Ok(d) => deps.push(d),
                    Err(err) => {
                        tracing::warn!(key = %e.key, error = %err, "skipping corrupt deployment")
                    }
                }
            }
        }
        envs.sort_by(|a, b| a.environment.name.cmp(&b.environment.name));
        for d in deps {
            if let Ok(i) =
                envs.binary_search_by(|e| e.environment.name.as_str().cmp(&d.environment_name))
            {
                envs[i].deployments.push(d);
            }
        }
        for e in &mut envs {
            sort_deployments(&mut e.deployments);
        }
        Ok(DaemonDesired::new(envs))
    }
}

/// What a key under [`EnvironmentStore::KEY_PREFIX`] holds (for watchers
/// of the store's keys, e.g. the HTTP change stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKey<'a> {
    /// The environment of this name.
    Environment(&'a str),
    /// A deployment of an environment.
    Deployment {
        /// The environment.
        environment: &'a str,
        /// The deployment id.
        id: &'a str,
    },
}

impl EnvironmentStore {
    /// The prefix of every key the environment store writes.
    pub const KEY_PREFIX: &'static str = ROOT;

    /// What a key of the environment store holds; `None` for any other key.
    pub fn parse_key(key: &str) -> Option<StoreKey<'_>> {
        if let Some(name) = key.strip_prefix(ENVS) {
            return Some(StoreKey::Environment(name));
        }
        let (environment, id) = key.strip_prefix(DEPS)?.split_once('/')?;
        Some(StoreKey::Deployment { environment, id })
    }
}

fn sort_deployments(d: &mut [Deployment]) {
    d.sort_by(|a, b| (a.sequence, a.created_at, &a.id).cmp(&(b.sequence, b.created_at, &b.id)));
}

#[async_trait::async_trait]
impl DesiredSource<DaemonDesired> for EnvironmentStore {
    async fn load(&self) -> Result<DaemonDesired, DesiredError> {
        EnvironmentStore::load(self)
            .await
            .map_err(|e| DesiredError {
                scheduler: super::SCHEDULER_NAME.into(),
                message: e.to_string(),
                source: Some(Box::new(e)),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_fit_the_started_by_limit_and_differ() {
        let a = new_deployment_id();
        let b = new_deployment_id();
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
        assert_eq!(a.as_bytes()[14], b'4');
    }

    #[test]
    fn errors_classify_for_http() {
        assert_eq!(
            EnvironmentError::StaleToken {
                environment: "x".into()
            }
            .class(),
            ErrorClass::BadRequest
        );
        assert_eq!(
            EnvironmentError::NotFound("x".into()).class(),
            ErrorClass::NotFound
        );
        assert_eq!(
            EnvironmentError::AlreadyExists("x".into()).class(),
            ErrorClass::BadRequest
        );
        assert_eq!(
            EnvironmentError::Store(StoreError::Unavailable {
                message: "down".into(),
                source: None
            })
            .class(),
            ErrorClass::Unavailable
        );
    }
}
