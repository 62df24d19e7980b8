//! The command line: `serve`, `check`, `certs`, `validate-config`, with `PULLGATE_*` env fallbacks.

use crate::engine::policy::{DurationError, HumanDuration};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// pullgate: catch imagePullSecrets misconfiguration at admission time.
#[derive(Debug, Parser)]
#[command(name = "pullgate", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
// Parsed once per process: the size of the serve variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTPS admission webhook.
    Serve(ServeArgs),
    /// Check manifests offline (for CI pipelines).
    Check(CheckArgs),
    /// Generate a CA and a serving certificate for the webhook.
    Certs(CertsArgs),
    /// Diagnose a live pod's image pulls, check by check, with the exact fixes.
    Doctor(DoctorArgs),
    /// Find the workloads whose next pod will fail to pull, and the pods whose secrets no longer
    /// cover their images (exit 0 nothing wrong, 1 any problem, 2 cluster unreadable).
    Audit(AuditArgs),
    /// Delete the release's webhook configurations by name (the chart's pre-delete hook); exit 0
    /// once all are gone, 2 if one could not be deleted.
    UninstallWebhooks(UninstallArgs),
    /// Validate a policy file and exit (0 valid, 2 invalid).
    ValidateConfig {
        /// The policy file.
        file: PathBuf,
    },
}

/// `pullgate uninstall-webhooks`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("targets").required(true).multiple(true).args(["mutating", "validating"]))]
pub struct UninstallArgs {
    /// A MutatingWebhookConfiguration to delete (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub mutating: Vec<String>,
    /// A ValidatingWebhookConfiguration to delete (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub validating: Vec<String>,
    /// Attempts per configuration when the API server fails transiently (5xx, 429, no answer).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// Kubeconfig (default: the usual KUBECONFIG lookup, then in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
}

/// `pullgate serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// HTTPS address for /mutate, /validate, /healthz and /readyz.
    #[arg(long, env = "PULLGATE_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// Plain-HTTP address for /metrics.
    #[arg(long, env = "PULLGATE_METRICS_LISTEN", default_value = "0.0.0.0:9090")]
    pub metrics_listen: SocketAddr,
    /// Most series of one metric family whose labels come from input (namespace, registry pattern,
    /// secret); further label sets are counted in the family's `_overflow` series.
    #[arg(
        long,
        env = "PULLGATE_METRICS_MAX_SERIES",
        default_value_t = crate::metrics::DEFAULT_MAX_SERIES,
        value_parser = max_series
    )]
    pub metrics_max_series: usize,
    /// Policy file (YAML).
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// PEM certificate chain (hot-reloaded).
    #[arg(
        long,
        env = "PULLGATE_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1; hot-reloaded).
    #[arg(long, env = "PULLGATE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Generate an in-memory CA and serving certificate at start.
    #[arg(long, env = "PULLGATE_SELF_SIGNED")]
    pub self_signed: bool,
    /// With --self-signed: write the CA certificate here so clients can verify.
    #[arg(long, env = "PULLGATE_CA_OUT", requires = "self_signed")]
    pub ca_out: Option<PathBuf>,
    /// Keep a generated CA and serving certificate in this kubernetes.io/tls Secret (in $POD_NAMESPACE),
    /// shared by the replicas, publish the CA in the --webhook-configuration caBundles, and rotate it
    /// before expiry.
    #[arg(
        long,
        env = "PULLGATE_SELF_SIGNED_SECRET",
        conflicts_with_all = ["tls_cert", "self_signed"]
    )]
    pub self_signed_secret: Option<String>,
    /// With --self-signed-secret: a Mutating- and/or ValidatingWebhookConfiguration whose caBundle
    /// pullgate keeps current (repeatable or comma-separated).
    #[arg(
        long = "webhook-configuration",
        env = "PULLGATE_WEBHOOK_CONFIGURATIONS",
        value_delimiter = ',',
        requires = "self_signed_secret"
    )]
    pub webhook_configurations: Vec<String>,
    /// Directory of manifests (Secrets, ServiceAccounts, Namespaces) to serve from; reloaded on change.
    #[arg(long, env = "PULLGATE_MANIFESTS", conflicts_with = "cluster")]
    pub manifests: Option<PathBuf>,
    /// Watch the cluster's Secrets, ServiceAccounts and Namespaces (in-cluster config or --kubeconfig).
    #[arg(long, env = "PULLGATE_CLUSTER")]
    pub cluster: bool,
    /// Kubeconfig for --cluster and --self-signed-secret (default: in-cluster config, then the usual
    /// KUBECONFIG lookup).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces to watch with --cluster (repeatable or comma-separated; default all).
    #[arg(
        long = "watch-namespace",
        env = "PULLGATE_WATCH_NAMESPACES",
        value_delimiter = ',',
        requires = "cluster"
    )]
    pub watch_namespaces: Vec<String>,
    /// Per-request deadline, below the API server's webhook timeout.
    #[arg(long, env = "PULLGATE_REQUEST_TIMEOUT", default_value = "4s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Async worker threads (default: the CPUs available, at most 4). A decision takes
    /// microseconds, and every worker costs memory (its allocator arena), which on a many-core
    /// node without a CPU limit would otherwise scale with the node.
    #[arg(long, env = "PULLGATE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub worker_threads: Option<u16>,
    /// Admission requests handled at once; more wait.
    #[arg(long, env = "PULLGATE_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// After SIGTERM, how long to keep accepting requests (while not ready) before draining.
    #[arg(long, env = "PULLGATE_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "PULLGATE_SHUTDOWN_GRACE_PERIOD", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
    /// How often the manifests directory and certificate files are checked for changes.
    #[arg(long, env = "PULLGATE_RELOAD_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// This pod's namespace (the chart sets it from the downward API): where the Leases and the
    /// --self-signed-secret Secret live.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,
    /// This pod's name: its identity in leader election (default: the host name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// The host name, the identity when no pod name is given.
    #[arg(long, env = "HOSTNAME", hide = true)]
    pub hostname: Option<String>,
}

/// Worker threads `serve` starts when not told: far more decisions per second than an API server
/// sends (see docs/performance.md), and few enough that memory does not grow with the node's cores.
pub const DEFAULT_MAX_WORKERS: usize = 4;

impl ServeArgs {
    /// This pod's namespace, when given and not empty.
    pub fn pod_namespace(&self) -> Option<&str> {
        self.pod_namespace.as_deref().filter(|s| !s.is_empty())
    }

    /// This replica's identity in leader election: the pod name, else the host name, else `pullgate`.
    pub fn identity(&self) -> &str {
        [&self.pod_name, &self.hostname]
            .into_iter()
            .filter_map(|s| s.as_deref())
            .find(|s| !s.is_empty())
            .unwrap_or("pullgate")
    }

    /// The async worker threads to start, given the CPUs available to the process.
    pub fn workers(&self, available_cpus: usize) -> usize {
        self.worker_threads
            .map_or_else(|| available_cpus.clamp(1, DEFAULT_MAX_WORKERS), usize::from)
    }
}

/// Output format of `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Human table and findings.
    Text,
    /// One JSON document.
    Json,
}

/// Validation mode override for `check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidationArg {
    /// Reject (exit 1) on errors.
    Deny,
    /// Report only.
    Warn,
    /// No findings.
    Off,
}

/// `pullgate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file (YAML).
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Namespace for objects that name none.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Override the policy's validation mode (CI usually wants deny).
    #[arg(long)]
    pub validation: Option<ValidationArg>,
    /// Verify the credentials of the input's pull secrets against their registries first (sends
    /// them over the network; exit 1 when one is rejected and verify.deny or --validation deny).
    #[arg(long)]
    pub verify: bool,
    /// Report files and documents that cannot be read (templates, broken YAML, malformed objects)
    /// as skipped instead of failing with exit 2: the exit code then reflects the findings alone.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
    /// Files, directories (recursively *.yaml, *.yml, *.json) or `-` for stdin.
    #[arg(default_value = "-")]
    pub paths: Vec<PathBuf>,
}

/// `pullgate doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The pod's name.
    pub pod: String,
    /// The pod's namespace.
    #[arg(long, short = 'n', default_value = "default")]
    pub namespace: String,
    /// Kubeconfig (default: the usual KUBECONFIG lookup, then in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Policy file (YAML).
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Also prove the namespace's pull-secret credentials against their registries (as `verify`
    /// does; sends them over the network).
    #[arg(long)]
    pub verify: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// `pullgate audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Audit this namespace only (default: the kubeconfig context's namespace).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Audit every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Read only inside these namespaces (comma-separated), never cluster-wide, as `serve
    /// --watch-namespace` does (for an identity with a Role per namespace); audits all of them
    /// unless `-n` picks one.
    #[arg(long, value_delimiter = ',', conflicts_with = "all_namespaces")]
    pub namespaces: Vec<String>,
    /// Also prove the audited pull secrets' credentials against their registries (as `verify`
    /// does; sends them over the network), so a rejected one is `CredentialsRejected`.
    #[arg(long)]
    pub verify: bool,
    /// Kubeconfig (default: the usual KUBECONFIG lookup, then in-cluster config).
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Policy file (YAML).
    #[arg(long, env = "PULLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Objects per list page.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub page_size: u32,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    pub output: OutputFormat,
}

/// `pullgate certs`.
#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Directory to write ca.crt, ca.key, tls.crt and tls.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// DNS names of the serving certificate (default: the pullgate.pullgate.svc names and localhost).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// IP addresses of the serving certificate (default: 127.0.0.1).
    #[arg(long = "ip")]
    pub ip: Vec<IpAddr>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
}

/// Parse a flag's duration, in the policy's syntax ([`HumanDuration`]): `500ms`, `4s`, `2m`,
/// `12h`, `1h 30m`, `PT90S`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    s.parse::<HumanDuration>().map(|d| d.0)
}

/// A series cap of at least one (zero would export nothing but overflow).
fn max_series(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        for (text, d) in [
            ("500ms", Duration::from_millis(500)),
            ("4s", Duration::from_secs(4)),
            ("2m", Duration::from_secs(120)),
            ("4h", Duration::from_secs(4 * 3_600)),
            ("1m 30s", Duration::from_secs(90)),
            ("PT90S", Duration::from_secs(90)),
        ] {
            assert_eq!(parse_duration(text).ok(), Some(d), "{text}");
        }
        for bad in ["", "4", "x4s", "-1s", "1mo"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bad_duration_names_its_flag() {
        let argv = [
            "pullgate",
            "serve",
            "--self-signed",
            "--request-timeout",
            "soon",
        ];
        let err = Cli::try_parse_from(argv).unwrap_err().to_string();
        assert!(
            err.contains("--request-timeout") && err.contains("soon"),
            "{err}"
        );
        assert_eq!(
            serve_args(&["--shutdown-grace-period", "1m 30s"]).shutdown_grace_period,
            Duration::from_secs(90)
        );
    }

    fn serve_args(extra: &[&str]) -> ServeArgs {
        let argv = ["pullgate", "serve", "--self-signed"].iter().chain(extra);
        match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Serve(args),
                ..
            }) => args,
            other => panic!("not a serve command line: {other:?}"),
        }
    }

    #[test]
    fn identity_is_the_pod_name_then_the_host_name() {
        let args = serve_args(&["--pod-name", "pg-0", "--hostname", "node-a"]);
        assert_eq!(args.identity(), "pg-0");
        let args = serve_args(&["--pod-name", "", "--hostname", "node-a"]);
        assert_eq!(args.identity(), "node-a");
        let args = serve_args(&["--pod-namespace", "infra"]);
        assert_eq!(args.pod_namespace(), Some("infra"));
        assert_eq!(serve_args(&["--pod-namespace", ""]).pod_namespace(), None);
    }

    #[test]
    fn metrics_max_series_defaults_and_refuses_zero() {
        assert_eq!(
            serve_args(&[]).metrics_max_series,
            crate::metrics::DEFAULT_MAX_SERIES
        );
        assert_eq!(
            serve_args(&["--metrics-max-series", "50"]).metrics_max_series,
            50
        );
        for bad in ["0", "-1", "lots"] {
            let argv = [
                "pullgate",
                "serve",
                "--self-signed",
                "--metrics-max-series",
                bad,
            ];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn worker_threads_default_to_the_cpus_at_most_four() {
        let auto = serve_args(&[]);
        assert_eq!(auto.workers(1), 1);
        assert_eq!(auto.workers(2), 2);
        assert_eq!(auto.workers(64), DEFAULT_MAX_WORKERS);
        assert_eq!(auto.workers(0), 1, "a failed CPU count still runs");
        assert_eq!(serve_args(&["--worker-threads", "12"]).workers(2), 12);
        for bad in ["0", "-1", "1025", "many"] {
            let argv = [
                "pullgate",
                "serve",
                "--self-signed",
                "--worker-threads",
                bad,
            ];
            assert!(Cli::try_parse_from(argv).is_err(), "{bad} accepted");
        }
    }
}
