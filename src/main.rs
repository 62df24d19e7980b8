//! The `pullgate` binary: parse the command line, set up logging, dispatch.

use anyhow::Context;
use clap::Parser;
use pullgate::cli::{Cli, Command, OutputFormat, ValidationArg};
use pullgate::engine::policy::{Policy, Validation};
use std::process::ExitCode;

fn main() -> ExitCode {
    // One process-wide provider for the webhook's TLS and the kube client (ring only: no OpenSSL, no aws-lc).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pullgate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Check(args) => check(args),
        Command::Certs(args) => {
            let bundle =
                pullgate::tls::certs::write_dev_certs(&args.out, &args.dns, &args.ip, args.days)?;
            emit(&format!("{bundle}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => doctor(args),
        Command::Audit(args) => audit(args),
        Command::UninstallWebhooks(args) => uninstall_webhooks(args),
        Command::ValidateConfig { file } => {
            let policy = load_policy(Some(&file))?;
            println!(
                "{}: valid (inject {}, validation {})",
                file.display(),
                policy.inject,
                policy.validation.as_str()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `pullgate serve` on a runtime sized by [`pullgate::cli::ServeArgs::workers`].
fn serve(args: pullgate::cli::ServeArgs) -> anyhow::Result<ExitCode> {
    pullgate::telemetry::init();
    // Counts the container's CPU quota too (cgroup cpu.max), not only the node's cores.
    let workers =
        args.workers(std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(pullgate::server::run(args))?;
    Ok(ExitCode::SUCCESS)
}

/// `pullgate check`: exit 0 all allowed, 1 a finding or rejected credential, 2 unreadable input.
fn check(args: pullgate::cli::CheckArgs) -> anyhow::Result<ExitCode> {
    let mut policy = load_policy(args.config.as_deref())?;
    if let Some(v) = args.validation {
        policy.validation_override = Some(match v {
            ValidationArg::Deny => Validation::Deny,
            ValidationArg::Warn => Validation::Warn,
            ValidationArg::Off => Validation::Off,
        });
    }
    let input = pullgate::manifests::read_paths(&args.paths)?;
    let verified = if args.verify {
        verify_offline(&input.documents, &policy, &args.namespace)?
    } else {
        Vec::new()
    };
    let now = jiff::Timestamp::now().as_second();
    let report = pullgate::check::check_manifests(
        &input,
        &policy,
        &args.namespace,
        now,
        &verified,
        args.skip_invalid,
    );
    // A rejected credential fails the check under verify.deny or deny mode, even when no
    // workload of the input uses the secret yet: it is about to be deployed.
    let validation = policy.validation_override.unwrap_or(policy.validation);
    let rejected = report.credentials_rejected()
        && validation != Validation::Off
        && (policy.verify.deny || validation == Validation::Deny);
    let text = match args.output {
        OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        OutputFormat::Text => pullgate::check::render_text(&report),
    };
    emit(&text)?;
    Ok(if !report.errors.is_empty() {
        ExitCode::from(2)
    } else if report.all_allowed() && !rejected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `pullgate doctor`: exit 0 fine, 1 a problem (2, through `main`, when the pod is unreadable).
fn doctor(args: pullgate::cli::DoctorArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let rt = current_thread_runtime()?;
    let now = jiff::Timestamp::now().as_second();
    let verifier = args.verify.then(|| verifier(&policy)).transpose()?;
    let report = rt.block_on(async {
        let client = pullgate::store::kube::client(args.kubeconfig.as_deref()).await?;
        let report = pullgate::doctor::run(
            client,
            &args.namespace,
            &args.pod,
            &policy,
            now,
            verifier.as_ref(),
        )
        .await?;
        anyhow::Ok(report)
    })?;
    let problem = report.has_problem();
    report_out(&report, args.output, pullgate::doctor::render_text, problem)
}

/// `pullgate audit`: exit 0 nothing wrong, 1 any problem, 2 cluster unreadable.
fn audit(args: pullgate::cli::AuditArgs) -> anyhow::Result<ExitCode> {
    let policy = load_policy(args.config.as_deref())?;
    let rt = current_thread_runtime()?;
    let now = jiff::Timestamp::now().as_second();
    let verifier = args.verify.then(|| verifier(&policy)).transpose()?;
    let (report, _) = rt.block_on(async {
        let client = pullgate::store::kube::client(args.kubeconfig.as_deref())
            .await
            .context("connecting to the API server")?;
        let namespace = match (args.all_namespaces, args.namespace) {
            (true, _) => None,
            (false, Some(ns)) => Some(ns),
            (false, None) if !args.namespaces.is_empty() => None,
            (false, None) => Some(client.default_namespace().to_owned()),
        };
        let options = pullgate::audit::cluster::Options {
            namespace,
            watch_namespaces: args.namespaces,
            page_size: args.page_size,
            ..Default::default()
        };
        let done = pullgate::audit::cluster::run(client, &policy, &options, now, verifier.as_ref())
            .await?;
        anyhow::Ok(done)
    })?;
    let problem = report.has_problem();
    report_out(
        &report,
        args.output,
        pullgate::audit::report::render_text,
        problem,
    )
}

/// A single-threaded runtime for the one-shot cluster commands (`doctor`, `audit`).
fn current_thread_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Print `report` as JSON or text; exit 1 when it has a problem, else 0.
fn report_out<R: serde::Serialize>(
    report: &R,
    output: OutputFormat,
    text: fn(&R) -> String,
    problem: bool,
) -> anyhow::Result<ExitCode> {
    let out = match output {
        OutputFormat::Json => serde_json::to_string_pretty(report)? + "\n",
        OutputFormat::Text => text(report),
    };
    emit(&out)?;
    Ok(if problem {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Delete the named webhook configurations; every one is tried, each result printed.
fn uninstall_webhooks(args: pullgate::cli::UninstallArgs) -> anyhow::Result<ExitCode> {
    use pullgate::uninstall::{Kind, Removed, Target};
    // Retries are logged (JSON on stdout, as `serve` logs), so a Job's log shows why it was slow.
    pullgate::telemetry::init();
    let targets: Vec<Target> = (args.mutating.iter().map(|n| (Kind::Mutating, n)))
        .chain(args.validating.iter().map(|n| (Kind::Validating, n)))
        .map(|(kind, name)| Target {
            kind,
            name: name.clone(),
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let results = rt.block_on(async {
        let client = pullgate::store::kube::client(args.kubeconfig.as_deref())
            .await
            .context("connecting to the API server")?;
        anyhow::Ok(pullgate::uninstall::delete_all(&client, &targets, args.attempts).await)
    })?;
    let mut failed = 0;
    for (target, result) in results {
        match result {
            Ok(Removed::Deleted) => emit(&format!("{target} deleted\n"))?,
            Ok(Removed::AlreadyGone) => emit(&format!("{target} already gone\n"))?,
            Err(e) => {
                failed += 1;
                eprintln!("pullgate: {e}");
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// `check --verify`: probe the input's pull secrets on a short-lived runtime (the rest of
/// `check` is synchronous).
fn verify_offline(
    docs: &[pullgate::manifests::Document],
    policy: &Policy,
    namespace: &str,
) -> anyhow::Result<Vec<pullgate::verify::offline::VerifiedSecret>> {
    let verifier = verifier(policy)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(pullgate::verify::offline::verify_documents(
        docs, policy, namespace, &verifier,
    )))
}

/// The verifier of `check --verify` and `doctor --verify`, warning about plain-HTTP registries.
fn verifier(policy: &Policy) -> anyhow::Result<pullgate::verify::Verifier> {
    let settings = pullgate::verify::Settings::from_policy(&policy.verify)?;
    for pattern in settings.insecure_patterns() {
        eprintln!("pullgate: warning: verify: plain HTTP allowed for {pattern}; its credentials cross the network unencrypted");
    }
    Ok(pullgate::verify::Verifier::new(settings))
}

fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Policy::from_yaml(&text).with_context(|| format!("in {}", path.display()))
}
