//! `pullgate serve` as a child process, for the tests that run the real binary: stdout and stderr
//! collected line by line, the bound addresses read from its `pullgate serving` JSON log line.
//! [`spawn_serve`] starts it on the file store with a certificate pair. Every wait polls against
//! a deadline.

use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A running `pullgate serve`; killed (if still running) when dropped.
pub struct ServeProcess {
    /// The process.
    pub child: Child,
    /// Address of the HTTPS admission listener.
    pub listen: SocketAddr,
    /// Address of the plain-HTTP metrics listener.
    pub metrics: SocketAddr,
    /// stdout lines so far (pullgate's JSON log).
    pub stdout: Arc<Mutex<Vec<String>>>,
    /// stderr lines so far.
    pub stderr: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    deadline: Duration,
}

fn collect_lines(
    r: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            into.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line);
        }
    })
}

impl ServeProcess {
    /// Spawn `pullgate serve --listen 127.0.0.1:0 --metrics-listen 127.0.0.1:0` followed by `args`,
    /// with `env` set and every other `PULLGATE_*` variable of the test's environment removed (they
    /// would stand in for flags), then wait for the `pullgate serving` line and read the bound
    /// addresses from it. `deadline` bounds that wait and every later [`ServeProcess::wait_log`].
    pub fn spawn<A, S>(args: A, env: &[(&str, &str)], deadline: Duration) -> ServeProcess
    where
        A: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pullgate"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
            .args(args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PULLGATE_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pullgate serve");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect_lines(child.stdout.take().expect("stdout"), stdout.clone()),
            collect_lines(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        let unbound: SocketAddr = "0.0.0.0:0".parse().expect("addr");
        let mut s = ServeProcess {
            child,
            listen: unbound,
            metrics: unbound,
            stdout,
            stderr,
            readers,
            deadline,
        };
        let line = s.wait_log("the 'pullgate serving' line", 0, |v| {
            v["message"] == "pullgate serving"
        });
        let addr = |key: &str| {
            line[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in {line}"))
        };
        s.listen = addr("listen");
        s.metrics = addr("metrics");
        s
    }

    /// `https://<listen><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.listen)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Number of stdout lines so far (to wait for lines after a point).
    pub fn mark(&self) -> usize {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Wait for a JSON log line at index >= `from` satisfying `pred`; panics (with the output)
    /// at the deadline or if the process exits first.
    pub fn wait_log(&mut self, what: &str, from: usize, pred: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + self.deadline;
        loop {
            {
                let lines = self.stdout.lock().unwrap_or_else(PoisonError::into_inner);
                for l in lines.iter().skip(from) {
                    if let Ok(v) = serde_json::from_str::<Value>(l) {
                        if pred(&v) {
                            return v;
                        }
                    }
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "pullgate exited ({status}) before {what}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout_text(),
                    self.stderr_text()
                );
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}\nstdout:\n{}\nstderr:\n{}",
                self.stdout_text(),
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The stdout lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// stdout so far, one line per line.
    pub fn stdout_text(&self) -> String {
        self.lines().join("\n")
    }

    /// stderr so far, one line per line.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .join("\n")
    }

    /// Send SIGTERM with kill(1).
    pub fn sigterm(&self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(st.success(), "kill -TERM failed");
    }

    /// Wait for the process to exit; None at the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for exit and for the output pipes to be drained.
    pub fn finish(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let s = self.wait_exit(deadline)?;
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Some(s)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Options of [`spawn_serve`].
pub struct ServeOpts<'a> {
    /// The `--manifests` directory.
    pub manifests: &'a Path,
    /// The `--tls-cert` file.
    pub cert: &'a Path,
    /// The `--tls-key` file.
    pub key: &'a Path,
    /// `RUST_LOG` of the process.
    pub rust_log: &'a str,
    /// Further arguments.
    pub extra: &'a [&'a str],
}

/// Spawn `pullgate serve` on free ports with the file store and a certificate pair, and read the
/// ports from its "pullgate serving" log line.
pub fn spawn_serve(o: ServeOpts<'_>) -> ServeProcess {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--manifests".into(),
        o.manifests.into(),
        "--tls-cert".into(),
        o.cert.into(),
        "--tls-key".into(),
        o.key.into(),
        "--reload-interval".into(),
        "100ms".into(),
    ];
    args.extend(o.extra.iter().map(Into::into));
    ServeProcess::spawn(args, &[("RUST_LOG", o.rust_log)], super::DEADLINE)
}
