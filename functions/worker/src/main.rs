use lambda_runtime::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let lambda = scim_relay_worker::init().await?;
    run(service_fn(|event| {
        scim_relay_worker::handle(&lambda, event)
    }))
    .await
}
