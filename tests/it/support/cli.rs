//! The `pullgate` binary as a real process, from async tests: run off the async runtime
//! (the harness's registries and servers live on it), with pullgate's own environment
//! variables that would change its output cleared.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

/// `pullgate`, without `PULLGATE_PLATFORM` / `PULLGATE_OUTPUT` from the caller's
/// environment, and without colours.
pub fn command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullgate"));
    cmd.env_remove("PULLGATE_PLATFORM")
        .env_remove("PULLGATE_OUTPUT")
        .env("NO_COLOR", "1");
    cmd
}

/// Run `cmd` to its end, feeding it `stdin` (none: an empty stdin).
pub async fn run(mut cmd: Command, stdin: Option<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("output")
    })
    .await
    .expect("join")
}

/// `pullgate ARGS`, with `env` added to its environment.
pub async fn pullgate(args: Vec<String>, env: Vec<(String, String)>) -> Output {
    let mut cmd = command();
    cmd.args(args).envs(env);
    run(cmd, None).await
}
