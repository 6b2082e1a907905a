use lambda_http::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let parts = scim_relay_inbound::Refreshing::new(
        scim_relay_inbound::init().await?,
        scim_relay_inbound::SECRETS_TTL,
    );
    run(service_fn(|req| {
        scim_relay_inbound::handle_current(&parts, req)
    }))
    .await
}
