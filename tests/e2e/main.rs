//! The end-to-end tests that the behaviour suite's deployment cannot express, in one binary so
//! they share one link and run side by side: the Lambda contract (`aws_lambda`: raw SQS events,
//! `batchItemFailures`, deadlines, the DynamoDB store's own contract, request counts), the
//! chaos runs on the Lambda handlers (`chaos_aws`) and on the standalone server (`standalone`,
//! with its ETag, `/metrics` and killed-process tests). `console_aws` and `lambda_init` set
//! process-wide state and keep binaries of their own.

mod aws_lambda;
mod chaos_aws;
mod standalone;
