//! The README's five-minute tour, run as written: its commands are taken
//! from README.md and run one by one with bash against the debug-build
//! daemon in simulate mode, on a free port put in place of 2000, so the
//! tour cannot drift from the code.
//!
//! Each command runs with a deadline. It fails the test when it exits
//! non-zero (any stage of a pipeline; `curl` reads a `.curlrc` that makes an
//! HTTP error status an error) or prints nothing. A variable assignment
//! (`TOKEN=$(...)`) must capture something; a command ending in `&` runs in
//! the background and must have printed something by the end of the tour.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use support::{answers, daemon, free_port, local, wait_for};

/// The longest any one tour command may take.
const DEADLINE_SECS: u32 = 30;

/// The README's tour section and the port its commands use.
const TOUR_HEADING: &str = "## A five-minute tour";
const TOUR_ADDR: &str = "localhost:2000";

/// The first ```sh block of the README's tour section.
fn tour_block(readme: &str) -> &str {
    let section = readme
        .split_once(TOUR_HEADING)
        .expect("README.md has a tour section")
        .1;
    let start = section.find("```sh\n").expect("the tour has a sh block") + "```sh\n".len();
    let len = section[start..]
        .find("\n```")
        .expect("the tour's sh block ends");
    &section[start..start + len]
}

/// Splits shell text into commands: one per line, except that a line ending
/// inside a quoted string continues on the next. Blank lines and comments
/// are dropped; a trailing comment is cut off. Each command must be a single
/// pipeline (no `;`, `&&` or `||` outside quotes), so that [`checked`] sees
/// the status of every stage.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    // `current` without its quoted parts.
    let mut bare = String::new();
    let (mut single, mut double) = (false, false);
    for line in block.lines() {
        let mut prev = ' ';
        let mut escaped = false;
        for c in line.chars() {
            let in_quotes = single || double;
            if !in_quotes && c == '#' && prev.is_whitespace() {
                break;
            }
            match c {
                '\'' if !double => single = !single,
                '"' if !single && !escaped => double = !double,
                _ => {}
            }
            escaped = double && c == '\\' && !escaped;
            current.push(c);
            if !in_quotes && !single && !double {
                bare.push(c);
            }
            prev = c;
        }
        if single || double {
            current.push('\n');
        } else {
            let cmd = current.trim().to_owned();
            assert!(
                !bare.contains(';') && !bare.contains("&&") && !bare.contains("||"),
                "one pipeline per tour command, so every stage is checked: {cmd}"
            );
            if !cmd.is_empty() {
                out.push(cmd);
            }
            current.clear();
            bare.clear();
        }
    }
    assert!(current.trim().is_empty(), "unterminated quote in the tour");
    out
}

/// What a tour command is, for running and judging it.
#[derive(Debug, PartialEq)]
enum Step<'a> {
    /// `NAME=$(command)`: the output becomes `$NAME` for later commands.
    Assign(&'a str, &'a str),
    /// `command &`: runs alongside the following commands.
    Background(&'a str),
    /// `sleep N`: silent by nature.
    Pause(&'a str),
    /// Anything else: must print something.
    Show(&'a str),
}

fn step(cmd: &str) -> Step<'_> {
    if let Some(bg) = cmd.strip_suffix('&')
        && !bg.ends_with('&')
    {
        return Step::Background(bg.trim());
    }
    if let Some((name, rest)) = cmd.split_once("=$(")
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && let Some(inner) = rest.strip_suffix(')')
    {
        return Step::Assign(name, inner);
    }
    if cmd.starts_with("sleep ") {
        return Step::Pause(cmd);
    }
    Step::Show(cmd)
}

/// `bash -c` text running `cmd`, then failing with the first failed stage
/// of its pipeline. A stage whose reader has stopped reading (curl's 23,
/// SIGPIPE's 141, as in `curl ... | head`) has not failed.
fn checked(cmd: &str) -> String {
    format!(
        "{cmd}\n\
         s=(\"${{PIPESTATUS[@]}}\"); last=$((${{#s[@]}} - 1))\n\
         for i in \"${{!s[@]}}\"; do\n\
           c=${{s[$i]}}\n\
           if [ \"$c\" != 0 ] && ! {{ [ \"$i\" -lt \"$last\" ] && {{ [ \"$c\" = 23 ] || [ \"$c\" = 141 ]; }}; }}; then\n\
             echo \"stage $((i + 1)) of the pipeline exited $c\" >&2; exit \"$c\"\n\
           fi\n\
         done\n"
    )
}

/// `bash` running `cmd` under `timeout`, with the tour's variables set and a
/// `HOME` whose `.curlrc` makes curl fail on an HTTP error status.
fn bash(cmd: &str, home: &Path, vars: &BTreeMap<String, String>) -> Command {
    let mut c = Command::new("timeout");
    c.args([&DEADLINE_SECS.to_string(), "bash", "-c", &checked(cmd)])
        .env("HOME", home)
        .envs(vars)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Fails the test unless `out` is a success that printed something.
fn judge(cmd: &str, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tour command failed ({}): {cmd}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    assert!(
        !stdout.trim().is_empty(),
        "tour command printed nothing: {cmd}\nstderr: {stderr}"
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_runs_as_written() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let port = free_port();
    let tour: Vec<String> = commands(tour_block(&readme))
        .into_iter()
        .map(|c| c.replace(TOUR_ADDR, &format!("localhost:{port}")))
        .collect();
    assert!(tour.len() >= 10, "the tour has too few commands: {tour:?}");

    let addr = local(port);
    let _daemon = daemon(addr, &["--simulate", "20", "--simulate-seed", "7"]).await;
    // A reader starts the tour once the daemon is up and its view is loaded.
    wait_for("readiness", Duration::from_secs(60), async || {
        answers(addr, "/v1/ready").await
    })
    .await;

    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".curlrc"), "fail-with-body\nshow-error\n").unwrap();
    let mut vars = BTreeMap::new();
    let mut background: Vec<(String, Child)> = Vec::new();
    for cmd in &tour {
        let cmd = cmd.as_str();
        match step(cmd) {
            Step::Background(bg) => {
                background.push((
                    cmd.to_owned(),
                    bash(bg, home.path(), &vars).spawn().unwrap(),
                ));
            }
            Step::Assign(name, inner) => {
                let out = bash(inner, home.path(), &vars).output().unwrap();
                let value = judge(cmd, &out).trim().to_owned();
                vars.insert(name.to_owned(), value);
            }
            Step::Pause(p) => {
                let out = bash(p, home.path(), &vars).output().unwrap();
                assert!(out.status.success(), "{cmd}: {}", out.status);
            }
            Step::Show(c) => {
                judge(cmd, &bash(c, home.path(), &vars).output().unwrap());
            }
        }
    }
    for (cmd, child) in background {
        judge(&cmd, &child.wait_with_output().unwrap());
    }
}

#[test]
fn tour_commands_split_on_lines_but_not_inside_quotes_or_comments() {
    let block = "curl -s a  # it's a comment\n\n# Blox v0.3's flow\ncurl -d '{\n  \"x\": 1}'\nT=$(curl -s \"b#c\")\ncurl c | head -n 5 &\nsleep 2\n";
    let cmds = commands(block);
    assert_eq!(
        cmds,
        [
            "curl -s a",
            "curl -d '{\n  \"x\": 1}'",
            "T=$(curl -s \"b#c\")",
            "curl c | head -n 5 &",
            "sleep 2",
        ]
    );
    assert_eq!(step(&cmds[0]), Step::Show("curl -s a"));
    assert_eq!(step(&cmds[2]), Step::Assign("T", "curl -s \"b#c\""));
    assert_eq!(step(&cmds[3]), Step::Background("curl c | head -n 5"));
    assert_eq!(step(&cmds[4]), Step::Pause("sleep 2"));
}

#[test]
#[should_panic(expected = "one pipeline per tour command")]
fn a_tour_command_of_several_pipelines_is_refused() {
    commands("curl -s a | head -c 5; echo\n");
}
