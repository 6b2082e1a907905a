use lambda_http::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let ingress = scim_relay_inbound::init().await?;
    run(service_fn(|req| scim_relay_inbound::handle(&ingress, req))).await
}
