//! The `pullgate` binary: parse the command line, set up logging, dispatch.

use anyhow::Context;
use clap::Parser;
use pullgate::cli::{Cli, Command, OutputFormat, ValidationArg};
use pullgate::policy::{Policy, Validation};
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
        Command::Serve(args) => {
            pullgate::telemetry::init();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(pullgate::server::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check(args) => {
            let mut policy = load_policy(args.config.as_deref())?;
            if let Some(v) = args.validation {
                policy.validation = match v {
                    ValidationArg::Deny => Validation::Deny,
                    ValidationArg::Warn => Validation::Warn,
                    ValidationArg::Off => Validation::Off,
                };
            }
            let docs = pullgate::manifests::load_paths(&args.paths)?;
            let now = jiff::Timestamp::now().as_second();
            let report = pullgate::check::check(&docs, &policy, &args.namespace, now);
            let text = match args.output {
                OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
                OutputFormat::Text => pullgate::check::render_text(&report),
            };
            emit(&text)?;
            Ok(if !report.errors.is_empty() {
                ExitCode::from(2)
            } else if report.all_allowed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Certs(args) => {
            let bundle =
                pullgate::tls::certs::write_dev_certs(&args.out, &args.dns, &args.ip, args.days)?;
            emit(&format!("{bundle}\n"))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor(args) => {
            let policy = load_policy(args.config.as_deref())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let now = jiff::Timestamp::now().as_second();
            let report = rt.block_on(async {
                let client = pullgate::store::kube::client(args.kubeconfig.as_deref()).await?;
                anyhow::Ok(
                    pullgate::doctor::run(client, &args.namespace, &args.pod, &policy, now).await?,
                )
            })?;
            let text = match args.output {
                OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
                OutputFormat::Text => pullgate::doctor::render_text(&report),
            };
            emit(&text)?;
            Ok(if report.has_problem() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
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

/// Write to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn load_policy(path: Option<&std::path::Path>) -> anyhow::Result<Policy> {
    let Some(path) = path else {
        return Ok(Policy::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Policy::from_yaml(&text).with_context(|| format!("in {}", path.display()))
}
