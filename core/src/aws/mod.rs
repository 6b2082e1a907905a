//! AWS wiring for the Lambdas: SDK configuration and secrets given as ARNs.

use std::collections::HashMap;

#[cfg(feature = "dynamodb")]
pub mod dynamodb_store;
pub mod sqs_queue;

use aws_config::BehaviorVersion;
pub use aws_config::SdkConfig;

/// Re-exported so the entry points need no SDK dependencies of their own.
#[cfg(feature = "dynamodb")]
pub use aws_sdk_dynamodb as dynamodb;
pub use aws_sdk_sqs as sqs;

use crate::config::{ConfigError, Settings};
use crate::secret::Secret;

/// SDK configuration from the environment (region, credentials, and `AWS_ENDPOINT_URL` for
/// local servers in tests), on [`https_client`].
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await
}

/// The SDK's HTTPS client on the TLS stack the rest of the relay uses (rustls 0.23 with
/// ring, as reqwest's): the SDK's default would link a second one (aws-lc-rs), and its legacy
/// default a third.
pub fn https_client() -> aws_sdk_sqs::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// After a Secrets Manager ARN (before any `#key`): the secret's previous value, as Secrets
/// Manager keeps it on a rotation (`put-secret-value` moves the old one to `AWSPREVIOUS`).
pub const PREVIOUS: &str = "@AWSPREVIOUS";

/// How long after a rotation the previous value is still read: long enough for in-flight work
/// and a redrive, short enough that a rotation also revokes the old value (a leaked one).
const ROTATION_OVERLAP_SECONDS: i64 = 24 * 3600;

/// Replaces every secret setting given as an ARN by its value:
/// `arn:aws:secretsmanager:…:secret:name` (the whole SecretString), `…#key` (one key of a JSON
/// secret), `…@AWSPREVIOUS` (its value before the last rotation, for a day after it; empty when
/// there is none), or `arn:aws:ssm:…:parameter/name` (decrypted). Each secret is fetched once.
pub async fn resolve_secrets(settings: &mut Settings, sdk: &SdkConfig) -> Result<(), ConfigError> {
    let sm = aws_sdk_secretsmanager::Client::new(sdk);
    let ssm = aws_sdk_ssm::Client::new(sdk);
    let mut fetched: HashMap<String, String> = HashMap::new();
    for secret in settings.secrets_mut() {
        let value = secret.expose().to_string();
        if !value.starts_with("arn:") {
            continue;
        }
        let (arn, json_key) = match value.split_once('#') {
            Some((arn, key)) => (arn.to_string(), Some(key.to_string())),
            None => (value.clone(), None),
        };
        if let Some(current) = arn.strip_suffix(PREVIOUS) {
            if !fetched.contains_key(&arn) {
                let text = previous_value(&sm, current).await?;
                fetched.insert(arn.clone(), text);
            }
        }
        if !fetched.contains_key(&arn) {
            let text = if arn.contains(":secretsmanager:") {
                sm.get_secret_value()
                    .secret_id(&arn)
                    .send()
                    .await
                    .map_err(|e| {
                        ConfigError::Invalid(format!(
                            "cannot read secret {arn}: {}",
                            aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                        ))
                    })?
                    .secret_string
                    .unwrap_or_default()
            } else if arn.contains(":ssm:") {
                // GetParameter takes the full ARN as its name; the ARN alone does not tell
                // whether the name began with a slash.
                ssm.get_parameter()
                    .name(&arn)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        ConfigError::Invalid(format!(
                            "cannot read parameter {arn}: {}",
                            aws_sdk_ssm::error::DisplayErrorContext(e)
                        ))
                    })?
                    .parameter
                    .and_then(|p| p.value)
                    .unwrap_or_default()
            } else {
                return Err(ConfigError::Invalid(format!(
                    "{arn} is neither a Secrets Manager nor an SSM ARN"
                )));
            };
            fetched.insert(arn.clone(), text);
        }
        let text = fetched.get(&arn).cloned().unwrap_or_default();
        let resolved = match json_key {
            None => text,
            // No previous value: none of its keys either.
            Some(_) if text.is_empty() && arn.ends_with(PREVIOUS) => text,
            Some(key) => {
                let json = serde_json::from_str::<serde_json::Value>(&text).map_err(|_| {
                    ConfigError::Invalid(format!("secret {arn} is not a JSON object"))
                })?;
                match json.get(&key) {
                    Some(serde_json::Value::String(v)) => v.clone(),
                    // An optional credential not put in yet (the settings' own checks
                    // reject a required one left empty).
                    None => {
                        tracing::warn!(secret = %arn, key = %key, "secret has no such key; read as empty");
                        String::new()
                    }
                    Some(_) => {
                        return Err(ConfigError::Invalid(format!(
                            "secret {arn}: `{key}` is not a string"
                        )))
                    }
                }
            }
        };
        *secret = Secret::new(resolved);
    }
    Ok(())
}

/// A secret's value before its last rotation, while the rotation is under a day old; empty
/// when it is older, or the secret was never rotated.
async fn previous_value(
    sm: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, ConfigError> {
    if !arn.contains(":secretsmanager:") {
        return Err(ConfigError::Invalid(format!(
            "{arn}{PREVIOUS}: only Secrets Manager secrets have a previous value"
        )));
    }
    let unreadable = |e: String| ConfigError::Invalid(format!("cannot read secret {arn}: {e}"));
    let current = sm
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            unreadable(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
        })?;
    let rotated_at = current.created_date.map(|d| d.secs()).unwrap_or(0);
    if chrono::Utc::now().timestamp() - rotated_at > ROTATION_OVERLAP_SECONDS {
        return Ok(String::new());
    }
    match sm
        .get_secret_value()
        .secret_id(arn)
        .version_stage("AWSPREVIOUS")
        .send()
        .await
    {
        Ok(previous) => Ok(previous.secret_string.unwrap_or_default()),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(String::new())
        }
        Err(e) => Err(unreadable(
            aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        )),
    }
}
