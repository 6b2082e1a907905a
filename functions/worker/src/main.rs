use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    scim_relay_core::lambda_log::init();
    let parts = scim_relay_worker::Refreshing::new(
        scim_relay_worker::init().await?,
        scim_relay_worker::SECRETS_TTL,
    );
    run(service_fn(|event| {
        scim_relay_worker::handle_current(&parts, event)
    }))
    .await
}
