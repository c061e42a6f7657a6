//! The table: keys, indexes and TTL (the one definition the bootstrap command, the tests and
//! the template's checks read), and creating it where it is missing.

use super::*;

/// The table's definition: the one source the bootstrap command, the tests and the SAM
/// template check read.
pub mod table {
    pub const PARTITION_KEY: &str = "pk";
    pub const SORT_KEY: &str = "sk";
    /// Sparse index of assignable VMs, oldest first.
    pub const FREE_INDEX: &str = "free";
    pub const FREE_PK: &str = "free_pk";
    pub const FREE_SK: &str = "free_sk";
    /// Index of every VM, oldest first (admin listing without a scan).
    pub const VMS_INDEX: &str = "vms";
    pub const VMS_PK: &str = "vms_pk";
    pub const VMS_SK: &str = "vms_sk";
    /// Provisioning requests per user, newest first.
    pub const REQUESTS_INDEX: &str = "requests";
    pub const REQUESTS_PK: &str = "req_pk";
    pub const REQUESTS_SK: &str = "req_sk";
    /// Epoch seconds after which DynamoDB may delete an ephemeral item.
    pub const TTL_ATTRIBUTE: &str = "expires_at";
}

impl DynamoStore {
    /// Creates the table (with its indexes and TTL) if it does not exist, and waits until it
    /// is active. For tests and local use; in the cloud the SAM template owns the table.
    pub async fn create_table_if_missing(&self) -> Result<()> {
        use table::*;
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| internal("building the table definition", e))
        };
        let key_el = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| internal("building the table definition", e))
        };
        let gsi = |index: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex> {
            GlobalSecondaryIndex::builder()
                .index_name(index)
                .key_schema(key_el(pk, KeyType::Hash)?)
                .key_schema(key_el(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| internal("building the table definition", e))
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attr(PARTITION_KEY)?)
            .attribute_definitions(attr(SORT_KEY)?)
            .attribute_definitions(attr(FREE_PK)?)
            .attribute_definitions(attr(FREE_SK)?)
            .attribute_definitions(attr(VMS_PK)?)
            .attribute_definitions(attr(VMS_SK)?)
            .attribute_definitions(attr(REQUESTS_PK)?)
            .attribute_definitions(attr(REQUESTS_SK)?)
            .key_schema(key_el(PARTITION_KEY, KeyType::Hash)?)
            .key_schema(key_el(SORT_KEY, KeyType::Range)?)
            .global_secondary_indexes(gsi(FREE_INDEX, FREE_PK, FREE_SK)?)
            .global_secondary_indexes(gsi(VMS_INDEX, VMS_PK, VMS_SK)?)
            .global_secondary_indexes(gsi(REQUESTS_INDEX, REQUESTS_PK, REQUESTS_SK)?)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if code(&e).as_deref() == Some("ResourceInUseException") => return Ok(()),
            Err(e) => return Err(internal("creating the table", DisplayErrorContext(e))),
        }
        for _ in 0..120 {
            let described = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| internal("describing the table", DisplayErrorContext(e)))?;
            let active = described
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() == "ACTIVE");
            if active {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(|e| internal("building the TTL setting", e))?,
            )
            .send()
            .await
            .map_err(|e| internal("enabling TTL", DisplayErrorContext(e)))?;
        Ok(())
    }
}
