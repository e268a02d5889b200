use blox_sched::scheduler::{Action, Scheduler, Snapshot, is_active};

/// One `web:3` task on every active instance with attribute `role=web`.
struct OnePerWebInstance;

const TAG: &str = "one-per-web";

impl Scheduler for OnePerWebInstance {
    type Desired = ();
    fn name(&self) -> &str { "one-per-web-instance" }
    fn decide(&self, snap: &Snapshot<()>) -> Vec<Action> {
        let mut out = Vec::new();
        for i in snap.instances_with_attribute("role", "web").filter(|i| is_active(i)) {
            let arn = &i.container_instance_arn;
            let running = snap.live_tasks_on(arn).any(|t| t.started_by.as_deref() == Some(TAG));
            // A start in flight counts: the view may not show its task yet.
            if !running && snap.pending_count(arn, TAG) == 0 && !snap.in_backoff(arn) {
                out.push(Action::start(i.cluster_arn.clone(), "web:3", vec![arn.clone()], TAG, "no task yet"));
            }
        }
        out
    }
}
