//! The AWS adapters (feature `aws`): DynamoDB for every store port, SQS for the job queue,
//! EC2 for compute, the offers/instances provider and network operations.

pub mod dynamodb;
pub mod ec2;
pub mod s3;
pub mod sqs;
mod stats;

pub use dynamodb::DynamoStore;
pub use ec2::{Ec2Cloud, Ec2Compute, Ec2Config, Ec2Network};
pub use s3::S3WorkStore;
pub use sqs::SqsQueue;
pub use stats::RequestStats;
