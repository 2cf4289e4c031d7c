//! Running one tool's command: the arguments as JSON on stdin, stdout as the output,
//! bounded in time and size. The process runs in a process group of its own, so a
//! timeout, an output over the cap, or a cancelled invocation kills everything it
//! started, not just the program named.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// How much of stderr a failure's message carries.
pub const STDERR_HEAD_BYTES: usize = 1024;

/// A tool's command, as the node's config declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCommand {
    /// Run as is, with no shell: `args` are passed one by one.
    pub program: String,
    pub args: Vec<String>,
    /// The working directory; `None`: the node's.
    pub cwd: Option<PathBuf>,
    /// The process's whole environment: `PASS_ENV` from the node's, then these. The
    /// node's token is not passed on.
    pub env: Vec<(String, String)>,
    /// The process is killed after this long.
    pub timeout: Duration,
    /// More output than this is an error (the process is killed), not a truncated
    /// success.
    pub max_output_bytes: usize,
}

/// The variables a tool's process gets from the node's environment; the rest (the
/// node's token among them) stay with the node.
pub const PASS_ENV: &[&str] = &["PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// Why a command gave no output.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("no result within {} ms; the process was killed", .0.as_millis())]
    TimedOut(Duration),
    #[error("the output passed {limit} bytes; the process was killed")]
    OutputTooLarge { limit: usize },
    /// A non-zero exit (or death by a signal), with the start of stderr.
    #[error("{status}{}{stderr}", if .stderr.is_empty() { "" } else { ": " })]
    Failed { status: ExitStatus, stderr: String },
    #[error("reading the process's output: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the command with `arguments` as JSON on stdin. Its stdout is the output: JSON
/// when it parses as JSON, otherwise the text (invalid UTF-8 replaced).
pub async fn run(cmd: &ToolCommand, arguments: &Value) -> Result<Value, ExecError> {
    let mut command = Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .env_clear()
        .envs(
            PASS_ENV
                .iter()
                .filter_map(|k| Some((k, std::env::var_os(k)?))),
        )
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let mut child = command.spawn().map_err(|source| ExecError::Spawn {
        program: cmd.program.clone(),
        source,
    })?;
    let mut group = GroupKill(child.id());
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let input = serde_json::to_vec(arguments).unwrap_or_default();
    let exchange = async {
        let write = async {
            if let Some(mut stdin) = stdin {
                // A program that does not read its input closes the pipe: not an error.
                let _ = stdin.write_all(&input).await;
            }
            Ok::<(), ExecError>(())
        };
        let (_, out, err) = tokio::try_join!(
            write,
            read_capped(stdout, cmd.max_output_bytes),
            read_head(stderr, STDERR_HEAD_BYTES),
        )?;
        let status = child.wait().await?;
        Ok::<_, ExecError>((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(cmd.timeout, exchange).await {
        Ok(r) => r?,
        Err(_) => return Err(ExecError::TimedOut(cmd.timeout)),
    };
    // It exited by itself: what it left running in the background may go on.
    group.0 = None;
    if !status.success() {
        return Err(ExecError::Failed {
            status,
            stderr: String::from_utf8_lossy(&err).trim().to_owned(),
        });
    }
    Ok(output(out))
}

fn output(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
}

/// All of `r`, or an error as soon as it passes `cap` bytes.
async fn read_capped(r: Option<impl AsyncRead + Unpin>, cap: usize) -> Result<Vec<u8>, ExecError> {
    let Some(r) = r else { return Ok(Vec::new()) };
    let mut buf = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    r.take(limit).read_to_end(&mut buf).await?;
    if buf.len() > cap {
        return Err(ExecError::OutputTooLarge { limit: cap });
    }
    Ok(buf)
}

/// The first `keep` bytes of `r`, reading (and dropping) the rest so the process never
/// blocks on a full pipe.
async fn read_head(r: Option<impl AsyncRead + Unpin>, keep: usize) -> Result<Vec<u8>, ExecError> {
    let Some(mut r) = r else {
        return Ok(Vec::new());
    };
    let mut head = Vec::new();
    (&mut r)
        .take(u64::try_from(keep).unwrap_or(u64::MAX))
        .read_to_end(&mut head)
        .await?;
    tokio::io::copy(&mut r, &mut tokio::io::sink()).await?;
    Ok(head)
}

/// Kills the process group of a child when dropped (a timeout, an error, a cancelled
/// invocation), unless the child exited by itself.
struct GroupKill(Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        let pid = self
            .0
            .and_then(|id| i32::try_from(id).ok())
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            // The group may be gone already; nothing to do then.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sh(script: &str) -> ToolCommand {
        ToolCommand {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            cwd: None,
            env: Vec::new(),
            timeout: Duration::from_secs(5),
            max_output_bytes: 1024,
        }
    }

    /// Whether a process is running (a zombie waiting for its parent is not).
    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|s| !s.trim_start().starts_with('Z'))
        })
    }

    #[tokio::test]
    async fn json_output_is_json_and_anything_else_is_text() {
        let args = json!({"path": "/tmp", "n": [1, 2]});
        assert_eq!(
            run(&sh("cat"), &args).await.unwrap(),
            args,
            "the arguments come on stdin"
        );
        assert_eq!(
            run(&sh("echo hello"), &json!({})).await.unwrap(),
            json!("hello\n")
        );
        assert_eq!(run(&sh("true"), &json!({})).await.unwrap(), json!(""));
        assert_eq!(run(&sh("echo 42"), &json!({})).await.unwrap(), json!(42));
    }

    #[tokio::test]
    async fn a_non_zero_exit_is_an_error_with_the_start_of_stderr() {
        let e = run(
            &sh("echo partial; echo 'disk full' >&2; exit 3"),
            &json!({}),
        )
        .await
        .unwrap_err();
        let ExecError::Failed { status, stderr } = &e else {
            panic!("{e}");
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(stderr, "disk full");
        assert!(e.to_string().contains("exit status: 3: disk full"), "{e}");

        let e = run(
            &sh("head -c 5000 /dev/zero | tr '\\0' x >&2; exit 1"),
            &json!({}),
        )
        .await
        .unwrap_err();
        let ExecError::Failed { stderr, .. } = &e else {
            panic!("{e}");
        };
        assert_eq!(
            stderr.len(),
            STDERR_HEAD_BYTES,
            "only the first KiB of stderr"
        );
    }

    #[tokio::test]
    async fn output_over_the_cap_is_an_error_not_a_truncated_success() {
        let mut cmd = sh("head -c 1024 /dev/zero");
        cmd.max_output_bytes = 1024;
        assert_eq!(
            run(&cmd, &json!({})).await.unwrap().as_str().map(str::len),
            Some(1024),
            "exactly the cap is fine"
        );
        // An endless writer: stopped at the cap, not read forever.
        let mut cmd = sh("yes");
        cmd.max_output_bytes = 1000;
        let started = std::time::Instant::now();
        let e = run(&cmd, &json!({})).await.unwrap_err();
        assert!(
            matches!(e, ExecError::OutputTooLarge { limit: 1000 }),
            "{e}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_process_and_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The shell starts a child of its own and waits: both must die.
        let mut cmd = sh(&format!("sleep 30 & echo $$ $! > {}; wait", pids.display()));
        cmd.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let e = run(&cmd, &json!({})).await.unwrap_err();
        assert!(matches!(e, ExecError::TimedOut(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let pids = std::fs::read_to_string(&pids).unwrap();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        assert_eq!(pids.len(), 2);
        let mut gone = false;
        for _ in 0..50 {
            if pids.iter().all(|p| !alive(p)) {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "the shell and its sleep were killed: {pids:?}");
    }

    #[tokio::test]
    async fn the_process_gets_its_own_environment_not_the_nodes() {
        // Cargo gives the test process this variable; the tool must not see it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let mut cmd = sh("echo \"${CARGO_MANIFEST_DIR:-unset} $TOOL_MODE ${PATH:+path}\"");
        cmd.env = vec![("TOOL_MODE".into(), "fast".into())];
        assert_eq!(
            run(&cmd, &json!({})).await.unwrap(),
            json!("unset fast path\n")
        );
        let e = run(
            &ToolCommand {
                program: "/no/such/program".into(),
                ..sh("")
            },
            &json!({}),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, ExecError::Spawn { .. }), "{e}");
    }
}
