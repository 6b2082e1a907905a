use lambda_runtime::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    scim_relay_core::lambda_log::init();
    let parts = scim_relay_sweeper::Refreshing::new(
        scim_relay_sweeper::init().await?,
        scim_relay_sweeper::SECRETS_TTL,
    );
    run(service_fn(|event| {
        scim_relay_sweeper::handle_current(&parts, event)
    }))
    .await
}
