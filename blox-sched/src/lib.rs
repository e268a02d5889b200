//! blox-sched
