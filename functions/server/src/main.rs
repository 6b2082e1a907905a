use std::path::PathBuf;
use std::process::ExitCode;

use scim_relay_core::config::Settings;

const USAGE: &str = "scim-relay — keeps a SCIM target's users in sync with Okta and Entra ID

USAGE:
    scim-relay serve [--config FILE]         run ingress, worker and sweeper on an embedded SQLite store
    scim-relay check-config [--config FILE]  validate the configuration and exit
    scim-relay redrive [--config FILE]       put every dead letter back on the queue (after fixing
                                             their cause; applied triggers are skipped)

The config file may also be given as SCIM_RELAY_CONFIG. Every key can be overridden by an
environment variable SCIM_RELAY_<SECTION>__<KEY>, e.g. SCIM_RELAY_OKTA__SHARED_SECRET.";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SCIM_RELAY_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("--help");
    if matches!(command, "--help" | "-h" | "help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if matches!(command, "--version" | "-V") {
        println!("scim-relay {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match config_path(&args[1..]) {
        Ok(path) => path,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let settings = match Settings::load(config.as_deref(), std::env::vars()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        "check-config" => match settings
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
        "serve" => serve(settings).await,
        "redrive" => redrive(&settings).await,
        other => {
            eprintln!("error: unknown command `{other}`\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn config_path(args: &[String]) -> Result<Option<PathBuf>, String> {
    match args {
        [] => Ok(std::env::var_os("SCIM_RELAY_CONFIG").map(PathBuf::from)),
        [flag, path] if flag == "--config" || flag == "-c" => Ok(Some(PathBuf::from(path))),
        _ => Err(format!("unexpected arguments: {}", args.join(" "))),
    }
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

async fn redrive(settings: &Settings) -> ExitCode {
    let db = match scim_relay_core::sqlite::SqliteDb::open(&settings.database) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: cannot open {}: {e}", settings.database);
            return ExitCode::from(1);
        }
    };
    match db.redrive_dead_letters().await {
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
