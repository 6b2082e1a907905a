use lambda_http::{run, service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    scim_relay_core::lambda_log::init();
    let parts = scim_relay_inbound::Refreshing::new(
        scim_relay_inbound::init().await?,
        scim_relay_inbound::SECRETS_TTL,
    );
    run(service_fn(|req| {
        scim_relay_inbound::handle_current(&parts, req)
    }))
    .await
}
