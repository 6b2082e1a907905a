use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use scim_relay_core::config::Settings;
use scim_relay_server::console::ConsoleCommand;
use scim_relay_server::logging::{self, LogFormat};

/// scim-relay keeps a SCIM target's users in sync with Okta and Entra ID.
#[derive(Parser)]
#[command(
    name = "scim-relay",
    version,
    arg_required_else_help = true,
    after_help = "Every setting can be overridden by an environment variable \
SCIM_RELAY_<SECTION>__<KEY>, e.g. SCIM_RELAY_OKTA__SHARED_SECRET."
)]
struct Cli {
    /// The configuration file (TOML); default: $SCIM_RELAY_CONFIG, else settings from the
    /// environment alone.
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Act on a Lambda deployment (DynamoDB and SQS named by store.table, queue.url and
    /// queue.dlq_url, with your own AWS credentials) instead of the standalone SQLite file.
    #[arg(long, global = true)]
    aws: bool,
    /// `json`: one JSON object per log line, for a log shipper (default: $SCIM_RELAY_LOG_FORMAT,
    /// else text). Logs go to stderr.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingress, worker and sweeper on an embedded SQLite store.
    Serve,
    /// Validate the configuration and exit.
    CheckConfig,
    /// Put every dead letter back on the queue (after fixing their cause; applied triggers
    /// are skipped).
    Redrive,
    /// Set up the IdP's side of a deployment: `setup okta --url https://…/okta`, or
    /// `setup graph --url https://…/entra`.
    Setup(scim_relay_server::setup::SetupArgs),
    #[command(flatten)]
    Console(ConsoleCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let format = cli.log_format.unwrap_or_else(LogFormat::from_env);
    // Nothing else has set one: this cannot fail.
    let _ = tracing::subscriber::set_global_default(logging::subscriber(
        format,
        std::io::stderr,
        logging::colour_on_stderr(),
    ));
    let config = cli
        .config
        .or_else(|| std::env::var_os("SCIM_RELAY_CONFIG").map(PathBuf::from));
    let settings = match Settings::load(config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // Fingerprints the commands print match the running relay's logs. A key given as an ARN
    // (`--aws`) sets nothing here: the console sets it once the secret is read.
    scim_relay_core::pii::set_fingerprint_key(&settings.queue.signing_key);
    match cli.command {
        Command::CheckConfig => match settings
            .check_ingress()
            .and_then(|()| settings.check_worker())
        {
            Ok(()) => {
                println!(
                    "configuration is valid (target profile: {:?})",
                    settings.target.profile
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Serve => serve(settings).await,
        Command::Redrive => {
            let moved = if cli.aws {
                redrive_aws(&settings).await
            } else {
                redrive(&settings).await
            };
            match moved {
                Ok(n) => {
                    println!("{n} dead letters back on the queue");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Setup(args) => setup(settings, cli.aws, args).await,
        Command::Console(command) => console(settings, cli.aws, command).await,
    }
}

/// `setup`: the IdP's side, with the settings as the relay has them (`--aws`: secrets given
/// as ARNs read with your own credentials).
async fn setup(
    mut settings: Settings,
    aws: bool,
    args: scim_relay_server::setup::SetupArgs,
) -> ExitCode {
    let resolved = if aws {
        resolve_aws_secrets(&mut settings).await
    } else {
        Ok(())
    };
    let outcome = match resolved {
        Ok(()) => {
            scim_relay_server::setup::run(&settings, args, &mut std::io::stdout().lock()).await
        }
        Err(e) => Err(e),
    };
    exit_code(outcome)
}

/// A command's outcome as the exit status (its error on stderr).
fn exit_code(outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "aws")]
async fn resolve_aws_secrets(settings: &mut Settings) -> Result<(), String> {
    let sdk = scim_relay_core::aws::sdk_config().await;
    scim_relay_core::aws::resolve_secrets(settings, &sdk)
        .await
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "aws"))]
async fn resolve_aws_secrets(_: &mut Settings) -> Result<(), String> {
    Err("this scim-relay was built without AWS support: cargo install --features aws".into())
}

async fn console(mut settings: Settings, aws: bool, command: ConsoleCommand) -> ExitCode {
    use scim_relay_server::console::{run, Console};
    let console = if aws {
        Console::aws(&mut settings).await
    } else {
        Console::sqlite(&settings)
    };
    let outcome = match console {
        Ok(console) => run(&console, &settings, command, &mut std::io::stdout().lock()).await,
        Err(e) => Err(e),
    };
    exit_code(outcome)
}

async fn serve(settings: Settings) -> ExitCode {
    let retry = scim_relay_server::RetryPolicy::from_settings(&settings);
    let relay = match scim_relay_server::start(settings, retry).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    shutdown_signal().await;
    tracing::info!("shutting down; finishing in-flight work");
    relay.stop().await;
    ExitCode::SUCCESS
}

/// The standalone's dead letters back on its queue; how many.
async fn redrive(settings: &Settings) -> Result<usize, String> {
    let db = scim_relay_core::sqlite::SqliteDb::open(&settings.database)
        .map_err(|e| format!("cannot open {}: {e}", settings.database))?;
    db.redrive_dead_letters().await.map_err(|e| e.to_string())
}

#[cfg(feature = "aws")]
async fn redrive_aws(settings: &Settings) -> Result<usize, String> {
    use scim_relay_core::aws::sqs_queue::SqsQueue;
    use scim_relay_core::config::required;
    let sdk = scim_relay_core::aws::sdk_config().await;
    let sqs = scim_relay_core::aws::sqs::Client::new(&sdk);
    let work = required(&settings.queue.url, "queue.url").map_err(|e| e.to_string())?;
    let dlq = required(&settings.queue.dlq_url, "queue.dlq_url").map_err(|e| e.to_string())?;
    SqsQueue::new(sqs.clone(), dlq)
        .redrive_into(&SqsQueue::new(sqs, work))
        .await
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "aws"))]
async fn redrive_aws(_: &Settings) -> Result<usize, String> {
    Err("this scim-relay was built without AWS support: cargo install --features aws".into())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
