use lambda_runtime::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let lambda = scim_relay_sweeper::init().await?;
    run(service_fn(|event| {
        scim_relay_sweeper::handle(&lambda, event)
    }))
    .await
}
