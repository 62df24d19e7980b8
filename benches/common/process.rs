//! What the process-level benches (`cluster_sync`, `attribution`, `audit`, `audit_serve`) share:
//! their `--name value` arguments, /proc readings, and the fake API server in a child process.

/// The value of `--name N` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A kB field of /proc/<pid>/status (e.g. "VmRSS:", "VmHWM:"); `pid` may be "self". 0 when unreadable.
pub fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// KiB as MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// In a bench's child process: announce the fake API server's kubeconfig on stdout (the line
/// [`spawn_fake_api`] waits for), then serve until the parent closes stdin.
pub async fn serve_until_stdin_closes(kubeconfig: &std::path::Path) {
    use std::io::Read;
    println!("READY {}", kubeconfig.display());
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await;
}

/// This bench re-executed with `role` set in its environment and `args`, as the fake API
/// server's process; the child (it exits when its stdin closes) and the kubeconfig it announced.
pub fn spawn_fake_api(role: &str, args: &[String]) -> (std::process::Child, std::path::PathBuf) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let exe = std::env::current_exe().expect("own executable");
    let mut child = Command::new(exe)
        .args(args)
        .env(role, "fake-api")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the fake API server");
    let stdout = child.stdout.take().expect("child stdout");
    let announced = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("READY ").map(std::path::PathBuf::from));
    match announced {
        Some(kubeconfig) => (child, kubeconfig),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the fake API server exited before it was ready")
        }
    }
}
