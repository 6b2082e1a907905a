use lambda_http::{run, service_fn, tracing, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing::init_default_subscriber();
    let ingress = inbound::init().await?;
    run(service_fn(|req| inbound::handle(&ingress, req))).await
}
