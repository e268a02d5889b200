//! A test build standing for the release after this one: the same daemon,
//! reading a stored layout one version newer ([`LAYOUT_VERSION`] + 1),
//! reached from this release's by one step that changes no format and
//! only marks outstanding start intents as the new layout's. The
//! mixed-version upgrade tests (`tests/daemon_upgrade.rs`) run it next to
//! `blox-daemon` against one etcd. Built only with the
//! `layout-test-build` feature; never shipped.

use std::process::ExitCode;

use blox_state::store::etcd::layout::{LAYOUT_VERSION, Layout, MigrationStep, restamp_intents};

/// The one step from this release's layout to the test build's.
const STEPS: &[MigrationStep] = &[MigrationStep {
    from: LAYOUT_VERSION,
    name: "test-build-next",
    run: |store| Box::pin(restamp_intents(store, LAYOUT_VERSION, LAYOUT_VERSION + 1)),
}];

fn main() -> ExitCode {
    blox_examples::daemon::main_with_layout(Layout {
        version: LAYOUT_VERSION + 1,
        migrations: STEPS,
    })
}
