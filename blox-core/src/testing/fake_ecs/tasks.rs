//! Task definitions, placement and the task lifecycle
//! (PENDING -> RUNNING -> STOPPED, each step a new version and an event).

use super::FakeError;
use super::config::TaskProgress;
use super::state::State;
use crate::model::{
    Arn, Container, ContainerOverride, InstanceStatus, LaunchType, ResourceKind, Task,
    TaskDefinition, TaskOverride, TaskStatus,
};
use crate::ports::{PlacementFailure, StartTaskOutput, StartTaskRequest};

/// The stop code of tasks stopped through `StopTask`.
pub(crate) const USER_INITIATED: &str = "UserInitiated";
/// The stop code of crashed tasks and tasks of terminated instances.
pub(crate) const ESSENTIAL_CONTAINER_EXITED: &str = "EssentialContainerExited";

/// Why a task definition cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TaskDefError {
    /// Not registered, and auto-registration is off or impossible.
    #[error("task definition {0:?} does not exist")]
    Missing(String),
    /// Not a family, `family:revision` or task definition ARN.
    #[error("invalid task definition {0:?}")]
    Invalid(String),
}

fn parse_int(s: Option<&str>) -> Option<i64> {
    s.and_then(|v| v.trim().parse().ok())
}

impl State {
    /// Registers the next revision of `family`.
    pub(crate) fn register_task_definition(
        &mut self,
        family: &str,
        cpu: i64,
        memory: i64,
    ) -> Result<TaskDefinition, FakeError> {
        let revision = self.latest_revision.get(family).copied().unwrap_or(0) + 1;
        self.insert_task_definition(family, revision, cpu, memory)
    }

    fn insert_task_definition(
        &mut self,
        family: &str,
        revision: i64,
        cpu: i64,
        memory: i64,
    ) -> Result<TaskDefinition, FakeError> {
        let valid = !family.is_empty()
            && family.len() <= 255
            && family
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid || revision < 1 {
            return Err(FakeError::InvalidName(family.chars().take(300).collect()));
        }
        let arn = self.arn(
            ResourceKind::TaskDefinition,
            &format!("{family}:{revision}"),
        )?;
        let td = TaskDefinition {
            task_definition_arn: arn.to_string(),
            family: family.to_owned(),
            revision,
            status: "ACTIVE".into(),
            cpu: Some(cpu.to_string()),
            memory: Some(memory.to_string()),
            container_cpu: cpu,
            container_memory: memory,
        };
        self.task_definitions
            .insert(format!("{family}:{revision}"), td.clone());
        let latest = self.latest_revision.entry(family.to_owned()).or_insert(0);
        *latest = (*latest).max(revision);
        Ok(td)
    }

    /// Finds a task definition by family, `family:revision` or ARN,
    /// registering an unknown `family:revision` when the setting allows.
    pub(crate) fn resolve_task_definition(
        &mut self,
        name: &str,
    ) -> Result<TaskDefinition, TaskDefError> {
        let invalid = || TaskDefError::Invalid(name.chars().take(300).collect());
        let key = if name.starts_with("arn:") {
            let arn = Arn::parse(name).map_err(|_| invalid())?;
            if arn.kind() != ResourceKind::TaskDefinition {
                return Err(invalid());
            }
            arn.id().to_owned()
        } else {
            name.to_owned()
        };
        let (family, revision) = match key.split_once(':') {
            Some((f, r)) => (f, Some(r.parse::<i64>().map_err(|_| invalid())?)),
            None => (key.as_str(), None),
        };
        let revision = match revision.or_else(|| self.latest_revision.get(family).copied()) {
            Some(r) => r,
            None if self.cfg.auto_register_task_definitions => 1,
            None => return Err(TaskDefError::Missing(key.clone())),
        };
        if let Some(td) = self.task_definitions.get(&format!("{family}:{revision}")) {
            return Ok(td.clone());
        }
        if !self.cfg.auto_register_task_definitions {
            return Err(TaskDefError::Missing(key.clone()));
        }
        let (cpu, memory) = (self.cfg.default_task_cpu, self.cfg.default_task_memory);
        self.insert_task_definition(family, revision, cpu, memory)
            .map_err(|_| invalid())
    }

    /// Starts one task per instance of `req`, honouring status, agent and
    /// resources; the caller has validated the request's size.
    pub(crate) fn start_tasks(
        &mut self,
        cluster: &str,
        td: &TaskDefinition,
        req: &StartTaskRequest,
    ) -> Result<StartTaskOutput, FakeError> {
        let cluster_arn = self.cluster(cluster)?.arn.clone();
        let cluster_name = self.cluster(cluster)?.name.clone();
        let overrides = req.overrides.as_ref();
        let cpu = parse_int(overrides.and_then(|o| o.cpu.as_deref()))
            .or(parse_int(td.cpu.as_deref()))
            .unwrap_or(td.container_cpu);
        let memory = parse_int(overrides.and_then(|o| o.memory.as_deref()))
            .or(parse_int(td.memory.as_deref()))
            .unwrap_or(td.container_memory);
        let mut out = StartTaskOutput::default();
        for instance_arn in &req.container_instances {
            let failure = |reason: &str| PlacementFailure {
                arn: Some(instance_arn.to_string()),
                reason: reason.to_owned(),
                detail: None,
            };
            let Some(instance) = self
                .instances
                .get(instance_arn)
                .filter(|i| i.cluster_arn == cluster_arn)
            else {
                out.failures.push(failure("MISSING"));
                continue;
            };
            let reason = match &instance.status {
                InstanceStatus::Active if !instance.agent_connected => Some("AGENT"),
                InstanceStatus::Active => None,
                InstanceStatus::Draining => Some("DRAINING"),
                _ => Some("INACTIVE"),
            };
            if let Some(reason) = reason {
                out.failures.push(failure(reason));
                continue;
            }
            if instance.remaining_cpu().unwrap_or(0) < cpu {
                out.failures.push(failure("RESOURCE:CPU"));
                continue;
            }
            if instance.remaining_memory().unwrap_or(0) < memory {
                out.failures.push(failure("RESOURCE:MEMORY"));
                continue;
            }
            let az = instance.availability_zone().map(str::to_owned);
            let task = self.create_task(
                &cluster_name,
                &cluster_arn,
                td,
                instance_arn,
                req,
                (cpu, memory),
                az,
            )?;
            out.tasks.push(task);
        }
        if self.cfg.task_progress == TaskProgress::Immediate {
            for t in &out.tasks {
                self.mark_running(&t.task_arn);
            }
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_task(
        &mut self,
        cluster_name: &str,
        cluster_arn: &Arn,
        td: &TaskDefinition,
        instance_arn: &Arn,
        req: &StartTaskRequest,
        (cpu, memory): (i64, i64),
        availability_zone: Option<String>,
    ) -> Result<Task, FakeError> {
        let id = self.hex(32);
        let task_arn = self.member_arn(ResourceKind::Task, cluster_name, &id)?;
        let container_id = self.uuid();
        let container_arn = if self.cfg.long_arns {
            self.arn(
                ResourceKind::Container,
                &format!("{cluster_name}/{id}/{container_id}"),
            )?
        } else {
            self.arn(ResourceKind::Container, &container_id)?
        };
        let now = self.now();
        let mut task = Task::new(
            task_arn.clone(),
            cluster_arn.clone(),
            &td.task_definition_arn,
        );
        task.container_instance_arn = Some(instance_arn.clone());
        task.containers = vec![Container {
            container_arn: Some(container_arn.to_string()),
            name: td.family.clone(),
            last_status: Some(TaskStatus::Pending),
            exit_code: None,
            reason: None,
            image: Some(format!("{}:latest", td.family)),
            network_bindings: Vec::new(),
            cpu: Some(cpu.to_string()),
            memory: Some(memory.to_string()),
        }];
        // As ECS reports them: one container override per container, named,
        // when the request gave none.
        task.overrides = Some(req.overrides.clone().unwrap_or_else(|| TaskOverride {
            container_overrides: vec![ContainerOverride {
                name: Some(td.family.clone()),
                ..ContainerOverride::default()
            }],
            ..TaskOverride::default()
        }));
        task.started_by = req.started_by.clone();
        task.group = Some(
            req.group
                .clone()
                .unwrap_or_else(|| format!("family:{}", td.family)),
        );
        task.launch_type = Some(LaunchType::Ec2);
        task.cpu = Some(cpu.to_string());
        task.memory = Some(memory.to_string());
        task.availability_zone = availability_zone;
        task.created_at = Some(now);
        self.tasks.insert(task_arn.clone(), task);
        if let Some(until) = self.listed_from() {
            self.lag.task_changed(&task_arn, None, until);
        }
        if let Some(c) = self.clusters.get_mut(cluster_name) {
            c.tasks_by_desired
                .entry(TaskStatus::Running)
                .or_default()
                .insert(task_arn.clone());
            c.tasks_by_instance
                .entry(instance_arn.clone())
                .or_default()
                .insert(task_arn.clone());
        }
        self.reservations.insert(task_arn.clone(), (cpu, memory));
        self.in_flight.insert(task_arn.clone());
        self.touch_task(&task_arn);
        self.adjust_remaining(instance_arn, -cpu, -memory);
        self.touch_instance(instance_arn);
        self.tasks
            .get(&task_arn)
            .cloned()
            .ok_or(FakeError::UnknownTask(task_arn))
    }

    /// PENDING -> RUNNING.
    pub(crate) fn mark_running(&mut self, arn: &Arn) {
        let now = self.now();
        let Some(t) = self.tasks.get_mut(arn) else {
            return;
        };
        if t.last_status != TaskStatus::Pending || t.desired_status != TaskStatus::Running {
            return;
        }
        t.last_status = TaskStatus::Running;
        t.started_at = Some(now);
        for c in &mut t.containers {
            c.last_status = Some(TaskStatus::Running);
        }
        self.in_flight.remove(arn);
        self.touch_task(arn);
    }

    /// Sets a live task's desired status to STOPPED (one event), then stops it
    /// at once or on the next advance, as configured. Returns whether it changed.
    pub(crate) fn begin_stop(&mut self, arn: &Arn, reason: &str, stop_code: &str) -> bool {
        let now = self.now();
        let Some(t) = self.tasks.get_mut(arn) else {
            return false;
        };
        if t.desired_status == TaskStatus::Stopped || t.last_status == TaskStatus::Stopped {
            return false;
        }
        t.stopped_reason = Some(reason.to_owned());
        t.stop_code = Some(stop_code.to_owned());
        t.stopping_at = Some(now);
        self.set_desired(arn, TaskStatus::Stopped);
        self.touch_task(arn);
        match self.cfg.task_progress {
            TaskProgress::Immediate => self.finish_stop(arn),
            TaskProgress::Manual => {
                self.in_flight.insert(arn.clone());
            }
        }
        true
    }

    /// -> STOPPED: records exit codes, releases the task's resources on its
    /// instance (an instance event) and queues the task's event.
    pub(crate) fn finish_stop(&mut self, arn: &Arn) {
        let now = self.now();
        let Some(t) = self.tasks.get_mut(arn) else {
            return;
        };
        if t.last_status == TaskStatus::Stopped {
            return;
        }
        let crashed = t.stop_code.as_deref() == Some(ESSENTIAL_CONTAINER_EXITED);
        let ran = t.started_at.is_some();
        t.last_status = TaskStatus::Stopped;
        t.stopped_at = Some(now);
        if t.stopping_at.is_none() {
            t.stopping_at = Some(now);
        }
        for c in &mut t.containers {
            c.last_status = Some(TaskStatus::Stopped);
            if crashed {
                c.exit_code = Some(1);
                c.reason = Some("Essential container exited with code 1".into());
            } else if ran {
                c.exit_code = Some(143);
            }
        }
        let instance = t.container_instance_arn.clone();
        self.in_flight.remove(arn);
        self.touch_task(arn);
        if let (Some(instance), Some((cpu, memory))) = (instance, self.reservations.remove(arn)) {
            self.adjust_remaining(&instance, cpu, memory);
            self.touch_instance(&instance);
        }
    }

    /// Stops a live task at once, in one change, as when its essential
    /// container exits. Returns whether it changed.
    pub(crate) fn crash(&mut self, arn: &Arn, reason: &str) -> bool {
        let now = self.now();
        let Some(t) = self.tasks.get_mut(arn) else {
            return false;
        };
        if !t.is_live() {
            return false;
        }
        t.stopped_reason = Some(reason.to_owned());
        t.stop_code = Some(ESSENTIAL_CONTAINER_EXITED.to_owned());
        t.stopping_at = Some(now);
        // The desired-status index moves now; finish_stop queues the one event.
        self.set_desired(arn, TaskStatus::Stopped);
        self.finish_stop(arn);
        true
    }

    /// Moves every task in transit one step on; returns how many moved.
    pub(crate) fn advance(&mut self) -> usize {
        let due: Vec<Arn> = self.in_flight.iter().cloned().collect();
        let mut moved = 0;
        for arn in due {
            let Some(t) = self.tasks.get(&arn) else {
                self.in_flight.remove(&arn);
                continue;
            };
            if t.desired_status == TaskStatus::Stopped {
                self.finish_stop(&arn);
                moved += 1;
            } else if t.last_status == TaskStatus::Pending {
                self.mark_running(&arn);
                moved += 1;
            } else {
                self.in_flight.remove(&arn);
            }
        }
        moved
    }

    /// Removes STOPPED tasks and INACTIVE instances, as ECS does once they
    /// age out; returns how many entities went.
    pub(crate) fn expire_retained(&mut self) -> usize {
        let stopped: Vec<Arn> = self
            .tasks
            .values()
            .filter(|t| t.last_status == TaskStatus::Stopped)
            .map(|t| t.task_arn.clone())
            .collect();
        for arn in &stopped {
            if let Some(t) = self.tasks.remove(arn)
                && let Some(c) = self.clusters.get_mut(t.cluster_arn.id())
            {
                if let Some(set) = c.tasks_by_desired.get_mut(&t.desired_status) {
                    set.remove(arn);
                }
                if let Some(i) = &t.container_instance_arn
                    && let Some(set) = c.tasks_by_instance.get_mut(i)
                {
                    set.remove(arn);
                    if set.is_empty() {
                        c.tasks_by_instance.remove(i);
                    }
                }
            }
        }
        let before = self.instances.len();
        self.instances
            .retain(|_, i| i.status != InstanceStatus::Inactive);
        stopped.len() + before - self.instances.len()
    }
}
