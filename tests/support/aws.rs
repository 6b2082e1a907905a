//! moto_server access: SDK configuration and per-test queues and tables.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::required_env;

pub async fn moto_config() -> SdkConfig {
    config_for(&required_env("RELAY_TEST_MOTO_URL")).await
}

/// SDK configuration for an AWS endpoint on this machine (moto, or a recorder in front of it).
pub async fn config_for(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(scim_relay_core::aws::https_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .load()
        .await
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// A FIFO work queue with a FIFO dead-letter queue behind it, as the SAM template makes them.
pub struct FifoQueues {
    pub url: String,
    pub dlq_url: String,
}

/// The work queue's `maxReceiveCount` as `infra/template.yaml` deploys it, so the tests' queues
/// redrive as production's do.
pub fn template_max_receive_count() -> u64 {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    let text = std::fs::read_to_string(path).expect("infra/template.yaml readable");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("template is YAML");
    yaml["Resources"]["WorkQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
        .as_u64()
        .expect("WorkQueue has a RedrivePolicy.maxReceiveCount")
}

/// A FIFO work queue and its dead-letter queue. The work queue's visibility is 2 s (the
/// template's is 360 s, the worker's timeout plus margin): what a test hands back or loses
/// comes back in seconds.
pub async fn create_fifo_queues(sqs: &aws_sdk_sqs::Client, name: &str) -> FifoQueues {
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("create DLQ")
        .queue_url
        .expect("DLQ url");
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("DLQ attributes")
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("DLQ arn");
    let url = sqs
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "2")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({
                "deadLetterTargetArn": dlq_arn,
                "maxReceiveCount": template_max_receive_count(),
            })
            .to_string(),
        )
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    FifoQueues { url, dlq_url }
}

fn attribute(name: &str, kind: ScalarAttributeType) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .expect("attr")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

/// The single state table as `infra/template.yaml` makes it: pk/sk strings, TTL on
/// `expires_at`, and the sparse `invites-due` index.
pub async fn create_table(ddb: &aws_sdk_dynamodb::Client, name: &str) {
    let invites = GlobalSecondaryIndex::builder()
        .index_name(scim_relay_core::aws::dynamodb_store::INVITES_INDEX)
        .key_schema(key("invite_shard", KeyType::Hash))
        .key_schema(key("invite_expires_at", KeyType::Range))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .expect("index");
    ddb.create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("invite_shard", ScalarAttributeType::S))
        .attribute_definitions(attribute("invite_expires_at", ScalarAttributeType::N))
        .global_secondary_indexes(invites)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S))
        .attribute_definitions(attribute("sk", ScalarAttributeType::S))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
    ddb.update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("enable TTL");
}
