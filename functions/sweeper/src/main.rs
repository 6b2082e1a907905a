use lambda_runtime::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let lambda = sweeper::init().await?;
    run(service_fn(|event| sweeper::handle(&lambda, event))).await
}
