//! The runner's loop: wait for a trigger, check the gates, decide, act.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use blox_core::model::{Arn, Task, Timestamp};
use blox_core::ports::TaskListFilter;
use blox_state::store::Filter;
use tokio::time::MissedTickBehavior;

use super::intents::IntentError;
use super::live::LiveView;
use super::plan::{Holds, plan};
use super::{BootstrapDone, LastDecision, Runner, WaitingFor, bump};
use crate::election::LeaderTerm;
use crate::scheduler::{Changes, IndexedView, Scheduler, Snapshot};

/// Why a cycle stopped early.
pub(crate) enum Stop {
    Waiting(WaitingFor),
    Error(String),
}

impl From<IntentError> for Stop {
    fn from(e: IntentError) -> Self {
        match e {
            IntentError::Fenced => Stop::Waiting(WaitingFor::Leadership),
            IntentError::Store(e) => Stop::Error(format!("intent store: {e}")),
        }
    }
}

struct Filters<'a> {
    clusters: &'a [String],
    boot: &'a BootstrapDone,
    tracker: &'a super::BackoffTracker,
    stopping: &'a std::collections::HashMap<Arn, Timestamp>,
    now: Timestamp,
}

impl Holds for Filters<'_> {
    fn manages(&self, cluster: &Arn) -> bool {
        // A cluster whose bootstrap is pending is not acted on yet.
        manages(self.clusters, cluster) && !self.boot.blocks(cluster)
    }
    fn backing_off(&self, instance: &Arn) -> bool {
        self.tracker.holds(instance, self.now)
    }
    fn stopping(&self, task: &Arn) -> bool {
        self.stopping.contains_key(task)
    }
}

pub(crate) fn manages(clusters: &[String], cluster: &Arn) -> bool {
    clusters.is_empty() || clusters.iter().any(|c| Filter::cluster_matches(c, cluster))
}

impl<S: Scheduler> Runner<S> {
    /// Runs cycles until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut changes = self.cache.changes();
        // The first tick runs a cycle over the current view anyway.
        changes.mark_unchanged();
        let mut ticker = tokio::time::interval(self.options.interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (mut changes_open, mut leader_open, mut boot_open) = (true, true, true);
        loop {
            let now = self.clock.now();
            let backoff_end = self
                .term
                .tracker
                .next_expiry(now)
                .map(|t| self.clock.instant_of(t));
            let retry_at = self
                .retry_soon
                .then(|| tokio::time::Instant::now() + self.options.backoff_start);
            tokio::select! {
                // Polled in order, so a seeded simulation replays exactly.
                biased;
                () = &mut shutdown => break,
                r = changes.changed(), if changes_open => {
                    if r.is_err() {
                        changes_open = false;
                    } else {
                        tokio::time::sleep(self.options.debounce).await;
                        changes.borrow_and_update();
                    }
                }
                _ = ticker.tick() => {}
                r = self.gates.leadership.changed(), if leader_open => leader_open = r.is_ok(),
                r = self.gates.bootstrapped.changed(), if boot_open => boot_open = r.is_ok(),
                () = self.wake.notified() => {}
                () = sleep_until(backoff_end) => {}
                () = sleep_until(retry_at) => {}
            }
            self.cycle().await;
        }
        tracing::info!(scheduler = self.scheduler.name(), "runner stopped");
    }

    /// One cycle: gates, decide, act; then publishes the status.
    pub(crate) async fn cycle(&mut self) {
        bump(&self.counters.cycles, 1);
        let now = self.clock.now();
        let outcome = self.try_cycle(now).await;
        let paused = self.paused.load(Ordering::SeqCst);
        self.retry_soon = matches!(
            outcome,
            Err(Stop::Error(_)) | Err(Stop::Waiting(WaitingFor::Intents))
        );
        let leader = self.term.ready.is_some();
        let held = self.term.tracker.held(now);
        let intents = self.term.book.len();
        self.status.send_modify(|s| {
            s.paused = paused;
            s.leader = leader;
            s.pending_intents = intents;
            s.instances_in_backoff = held;
            s.last_cycle = Some(now);
            match outcome {
                Ok(()) => {
                    s.waiting_for = None;
                    s.last_error = None;
                }
                Err(Stop::Waiting(w)) => s.waiting_for = Some(w),
                Err(Stop::Error(e)) => {
                    s.waiting_for = None;
                    s.last_error = Some(e);
                }
            }
        });
    }

    async fn try_cycle(&mut self, now: Timestamp) -> Result<(), Stop> {
        if !self.cache.is_ready() {
            return Err(Stop::Waiting(WaitingFor::Cache));
        }
        let Some(boot) = self.gates.bootstrapped.borrow().clone() else {
            return Err(Stop::Waiting(WaitingFor::Bootstrap));
        };
        let Some(term) = self.gates.leadership.borrow().clone() else {
            self.end_term();
            return Err(Stop::Waiting(WaitingFor::Leadership));
        };
        if !boot.serves(term.revision) {
            // The bootstrap of another term: this one's is yet to come.
            return Err(Stop::Waiting(WaitingFor::Bootstrap));
        }
        if !boot.reached_by(self.cache.revision()) {
            return Err(Stop::Waiting(WaitingFor::View));
        }
        if self.term.fenced == Some(term.revision) {
            return Err(Stop::Waiting(WaitingFor::Leadership));
        }
        let result = if self.term.ready == Some(term.revision) {
            self.act(&term, &boot, now).await
        } else {
            self.end_term();
            match self.take_over(&term, now).await {
                Ok(()) => {
                    self.term.ready = Some(term.revision);
                    self.act(&term, &boot, now).await
                }
                Err(e) => Err(e),
            }
        };
        if matches!(result, Err(Stop::Waiting(WaitingFor::Leadership))) {
            tracing::warn!(scheduler = self.scheduler.name(), revision = %term.revision,
                "fenced out: the leader key changed; not acting on this term again");
            bump(&self.counters.fenced, 1);
            self.end_term();
            self.term.fenced = Some(term.revision);
        }
        result
    }

    /// Forgets the state of the previous term.
    fn end_term(&mut self) {
        if self.term.ready.take().is_some() {
            tracing::info!(scheduler = self.scheduler.name(), "term ended; runner idle");
        }
        self.term.book.clear();
        self.term.tracker.clear();
        self.term.stopping.clear();
        self.term.baseline = true;
        self.live = None;
        self.last = None;
    }

    /// The start of a term: load the intents any leader left and resolve
    /// them against `ListTasks(startedBy)` before acting.
    async fn take_over(&mut self, term: &LeaderTerm, now: Timestamp) -> Result<(), Stop> {
        let waiting = |e: String| {
            tracing::warn!(error = %e, "cannot resolve the previous leader's intents yet");
            Stop::Waiting(WaitingFor::Intents)
        };
        self.term
            .book
            .load(self.store.as_ref())
            .await
            .map_err(|e| waiting(e.to_string()))?;
        // Never take over starts that a daemon reading another stored
        // layout left outstanding: it may mean them differently. Wait
        // (acting on nothing) until they are gone.
        let own = self.store.layout_version();
        let foreign = self.term.book.foreign_layouts(own);
        if !foreign.is_empty() {
            self.term.book.clear();
            return Err(waiting(format!(
                "intents written under stored layout(s) {foreign:?} are outstanding, and this daemon reads layout {}: \
                 let a daemon of that layout resolve them, or finish the upgrade (docs/operating.md, section 5)",
                own
            )));
        }
        let inherited = self.term.book.len();
        let keys: Vec<String> = self.term.book.iter().map(|(k, _)| k.clone()).collect();
        let mut gone = Vec::new();
        let mut claimed = self.term.book.known_tasks();
        for key in keys {
            match self.check_intent(&key, now, &mut claimed).await {
                Ok(true) => {}
                Ok(false) => gone.push(key),
                Err(e) => return Err(waiting(e)),
            }
        }
        let resolved = gone.len();
        self.term
            .book
            .remove(self.store.as_ref(), term, gone)
            .await
            .map_err(|e| match e {
                IntentError::Fenced => Stop::Waiting(WaitingFor::Leadership),
                IntentError::Store(e) => waiting(e.to_string()),
            })?;
        bump(&self.counters.intents_resolved, resolved);
        tracing::info!(scheduler = self.scheduler.name(), revision = %term.revision,
            inherited, resolved, "term started; intents resolved");
        Ok(())
    }

    /// Checks one intent against `ListTasks(startedBy, instance)`: keeps it
    /// (`true`) while it is younger than the timeout, or while ECS lists its
    /// task (recording which one, if unknown: a task the view did not show
    /// when the intent was written and that no other intent `claimed`);
    /// otherwise says it can go (`false`).
    async fn check_intent(
        &mut self,
        key: &str,
        now: Timestamp,
        claimed: &mut HashSet<Arn>,
    ) -> Result<bool, String> {
        let Some(intent) = self.term.book.get_mut(key) else {
            return Ok(false);
        };
        let filter = TaskListFilter {
            cluster: intent.record.cluster.to_string(),
            container_instance: Some(intent.record.instance.clone()),
            started_by: Some(intent.record.started_by.clone()),
            ..TaskListFilter::default()
        };
        let listed = self
            .list_all_tasks(&filter)
            .await
            .map_err(|e| e.to_string())?;
        let Some(intent) = self.term.book.get_mut(key) else {
            return Ok(false);
        };
        intent.checked_at = Some(now);
        // A young intent stays whatever ECS lists (its listings may lag).
        let young = now.since(intent.record.since) < self.options.intent_timeout;
        let keep = match &intent.record.task {
            Some(task) => listed.contains(task) || young,
            None => match listed
                .into_iter()
                .find(|t| intent.may_be(t) && !claimed.contains(t))
            {
                Some(task) => {
                    claimed.insert(task.clone());
                    intent.record.task = Some(task);
                    true
                }
                None => young,
            },
        };
        Ok(keep)
    }

    /// Resolves intents the view now accounts for (their task, or while
    /// it is unknown a task of their instance and `startedBy` the view did
    /// not show when they were written, each task standing for one intent),
    /// and checks the overdue ones against ECS.
    async fn resolve_intents(
        &mut self,
        term: &LeaderTerm,
        view: &IndexedView,
        now: Timestamp,
    ) -> Result<(), Stop> {
        if self.term.book.len() == 0 {
            return Ok(());
        }
        let mut claimed = self.term.book.known_tasks();
        let timeout = self.options.intent_timeout;
        let mut resolved = Vec::new();
        let mut overdue = Vec::new();
        for (key, intent) in self.term.book.iter() {
            let record = &intent.record;
            let seen = match &record.task {
                Some(task) => view.task(task).is_some(),
                None => {
                    let found = view.tasks_on(&record.instance).find(|t| {
                        t.started_by.as_deref() == Some(record.started_by.as_str())
                            && intent.may_be(&t.task_arn)
                            && !claimed.contains(&t.task_arn)
                    });
                    match found {
                        Some(t) => claimed.insert(t.task_arn.clone()),
                        None => false,
                    }
                }
            };
            if seen {
                resolved.push(key.clone());
            } else if now.since(record.since) >= timeout
                && intent.checked_at.is_none_or(|c| now.since(c) >= timeout)
            {
                overdue.push(key.clone());
            }
        }
        for key in overdue {
            match self.check_intent(&key, now, &mut claimed).await {
                Ok(true) => {}
                Ok(false) => resolved.push(key),
                Err(e) => tracing::warn!(%key, error = %e, "cannot check an overdue intent"),
            }
        }
        let n = resolved.len();
        self.term
            .book
            .remove(self.store.as_ref(), term, resolved)
            .await?;
        bump(&self.counters.intents_resolved, n);
        Ok(())
    }

    /// Forgets issued stops the view shows done (or that are older than the
    /// intent timeout, so a stop ECS lost is issued again), and returns the
    /// instances of those still in the view.
    fn forget_stops(&mut self, view: &IndexedView, now: Timestamp) -> Vec<Arn> {
        let timeout = self.options.intent_timeout;
        let mut instances = Vec::new();
        self.term.stopping.retain(|task, since| {
            let t = view.task(task);
            let keep = t.is_some_and(|t| t.is_live()) && now.since(*since) < timeout;
            if !keep {
                instances.extend(t.and_then(|t| t.container_instance_arn.clone()));
            }
            keep
        });
        instances
    }

    /// Decides and acts, as leader of `term`, on the clusters whose
    /// bootstrap `boot` says is done.
    async fn act(
        &mut self,
        term: &LeaderTerm,
        boot: &BootstrapDone,
        now: Timestamp,
    ) -> Result<(), Stop> {
        if self.paused.load(Ordering::SeqCst) {
            self.last = None;
            return Ok(());
        }
        let desired = self
            .desired
            .load()
            .await
            .map_err(|e| Stop::Error(e.to_string()))?;
        if self.scheduler.is_idle(&desired)
            && self.term.book.len() == 0
            && self.term.stopping.is_empty()
        {
            // Nothing wanted, nothing in flight: no need to read the view.
            // Stops seen meanwhile are history, not crashes, when the
            // scheduler wants something again.
            self.term.baseline = true;
            self.live = None;
            self.last = None;
            bump(&self.counters.idle, 1);
            return Ok(());
        }
        let live = self
            .live
            .get_or_insert_with(|| LiveView::new(self.options.clusters.clone()));
        let loads = live.loads();
        // The view reaches at least the cache's revision, which the gates
        // were checked against.
        let mut changes = live.sync(&self.cache).await;
        // Taken now: a cycle that fails from here on leaves no last
        // decision, so the next one is full (these changes are consumed).
        let last = self.last.take();
        bump(&self.counters.view_loads, (live.loads() - loads) as usize);
        bump(
            &self.counters.view_changes,
            changes.tasks.len() + changes.removed.len(),
        );
        let view = live.shared();
        if std::mem::take(&mut self.term.baseline) {
            self.term.tracker.baseline(view.tasks());
        }
        if changes.full {
            // Whatever changed while the view was not followed: every task
            // of ours is looked at again (stops already seen stay seen).
            self.term.tracker.forget_absent(&view);
            changes.tasks = self.term.tracker.tasks_of_ours(&view);
        }
        self.term
            .tracker
            .observe(&view, &changes.tasks, &changes.removed, now);
        self.resolve_intents(term, &view, now).await?;
        let forgotten = self.forget_stops(&view, now);

        // The instances whose decision may differ from the last one: their
        // records or tasks changed, or they have (or had, at the last
        // decision) starts in flight or a backoff.
        let pending = self.term.book.pending_starts();
        let backoff = self.term.tracker.snapshot();
        let marked: HashSet<Arn> = pending
            .iter()
            .map(|p| p.instance.clone())
            .chain(backoff.keys().cloned())
            .collect();
        let mut touched = std::mem::take(&mut changes.instances);
        touched.extend(marked.iter().cloned());
        touched.extend(forgotten);
        let full_due = self
            .last_full
            .is_none_or(|t| now.since(t) >= self.options.interval);
        let full = changes.full || full_due || last.as_ref().is_none_or(|l| !l.complete);
        if let Some(l) = &last {
            touched.extend(l.marked.iter().cloned());
        }
        let since = match (&last, full) {
            (Some(l), false) => Changes::since(&l.desired, &touched),
            _ => {
                bump(&self.counters.full_decisions, 1);
                self.last_full = Some(now);
                Changes::full()
            }
        };
        let snapshot = Snapshot::of_view(view, pending, backoff, desired, now);
        let actions = self.scheduler.decide_changed(&snapshot, &since);
        if let Some(observer) = &self.observer {
            observer.observe_changed(&snapshot, &since, term).await;
        }
        let view = Arc::clone(snapshot.view());
        let desired = snapshot.into_desired();
        let mut new_tags = Vec::new();
        for a in &actions {
            if let crate::scheduler::Action::Start(s) = a
                && !self.term.tracker.knows_tag(&s.started_by)
            {
                self.term.tracker.learn_tag(&s.started_by);
                new_tags.push(s.started_by.clone());
            }
        }
        for tag in new_tags {
            let tasks: Vec<Arc<Task>> = view.tasks_started_by(&tag).cloned().collect();
            self.term.tracker.observe(&view, &tasks, &[], now);
        }
        let plan = plan(
            actions,
            &Filters {
                clusters: &self.options.clusters,
                boot,
                tracker: &self.term.tracker,
                stopping: &self.term.stopping,
                now,
            },
            self.options.max_actions_per_cycle,
        );
        if plan.capped > 0 {
            tracing::warn!(
                scheduler = self.scheduler.name(),
                capped = plan.capped,
                cap = self.options.max_actions_per_cycle,
                "actions over the per-cycle cap deferred"
            );
        }
        let mut last = LastDecision {
            desired,
            marked,
            complete: plan.capped == 0 && plan.held == 0 && !self.options.dry_run,
        };
        if plan.len() == 0 {
            self.last = Some(last);
            return Ok(());
        }
        if self.options.dry_run {
            let actions = plan.actions();
            for a in &actions {
                tracing::info!(scheduler = self.scheduler.name(), action = ?a, "dry-run: not executed");
            }
            bump(&self.counters.dry_run, plan.len());
            self.status.send_modify(|s| s.last_dry_run = actions);
            return Ok(());
        }
        let before = tasks_before(&plan, &view);
        drop(view);
        let failed = self.counters.failed.load(Ordering::Relaxed);
        self.term.unissued = false;
        let result = self.execute(term, plan, &before, now).await;
        last.complete &= result.is_ok()
            && !self.term.unissued
            && self.counters.failed.load(Ordering::Relaxed) == failed;
        self.last = Some(last);
        result
    }
}

/// The tasks the view shows per instance and `startedBy` started in `plan`
/// (recorded in each start's intent: none of them is its task).
fn tasks_before(plan: &super::plan::Plan, view: &IndexedView) -> super::execute::Before {
    let mut out = super::execute::Before::new();
    for s in &plan.starts {
        for i in &s.instances {
            let key = (i.clone(), s.started_by.clone());
            if out.contains_key(&key) {
                continue;
            }
            let tasks: Vec<Arn> = view
                .tasks_on(i)
                .filter(|t| t.started_by.as_deref() == Some(s.started_by.as_str()))
                .map(|t| t.task_arn.clone())
                .collect();
            if !tasks.is_empty() {
                out.insert(key, tasks);
            }
        }
    }
    out
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
