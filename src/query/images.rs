//! `current.<schema>.<table>` and `as_of(...)` as DataFusion tables: the change log, sorted,
//! folded into the table's rows by [`fold::ImageFold`].
//!
//! ```text
//!  scan ─► physical plan of `SELECT … FROM <change log> [WHERE _commit_ts <= cutoff]
//!                            ORDER BY _lsn, snapshot reads first, _seq`   (sorts; spills)
//!       ─► ImageStream: fold every batch ─► images in batches ─► projection, limit
//! ```
//!
//! Filters on the view are applied above the fold, never pushed into the change log: a filter
//! on a key column would hide the update that moved a row away from that key.

pub mod fold;

use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use deltalake::datafusion::catalog::{Session, TableProvider};
use deltalake::datafusion::datasource::TableType;
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::execution::TaskContext;
use deltalake::datafusion::execution::memory_pool::MemoryConsumer;
use deltalake::datafusion::logical_expr::{Expr, LogicalPlan};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use deltalake::datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, SendableRecordBatchStream,
};
use futures_util::{StreamExt, TryStreamExt};

pub use fold::{ImageFold, ImageSpec};

/// The rows of a change table at the end of `plan`'s changes.
#[derive(Debug)]
pub struct ImageTable {
    /// The sorted change log (with any cutoff already bound).
    plan: LogicalPlan,
    spec: Arc<ImageSpec>,
    schema: SchemaRef,
}

impl ImageTable {
    /// `plan` must produce the source columns, `_op`, `_lsn`, `_commit_ts`, `_actor`,
    /// `_before` (and `_unavailable` when the table has it) in fold order.
    pub fn new(plan: LogicalPlan, spec: ImageSpec) -> Result<ImageTable> {
        let schema = fold::output_schema(&spec, plan.schema().as_arrow())?;
        Ok(ImageTable {
            plan,
            spec: Arc::new(spec),
            schema,
        })
    }
}

#[async_trait]
impl TableProvider for ImageTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// A view in `information_schema`; it has no logical plan to offer, since DataFusion
    /// would inline it in place of the fold.
    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = state.create_physical_plan(&self.plan).await?;
        if input.output_partitioning().partition_count() != 1 {
            return Err(DataFusionError::Internal(
                "the sorted change log of an image plan must be one partition".into(),
            ));
        }
        let stream = Arc::new(ImageStream {
            input,
            spec: Arc::clone(&self.spec),
            schema: Arc::clone(&self.schema),
        });
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            vec![stream],
            projection,
            [],
            false,
            limit,
        )?))
    }
}

/// One execution of the fold over the sorted change log.
#[derive(Debug)]
struct ImageStream {
    input: Arc<dyn ExecutionPlan>,
    spec: Arc<ImageSpec>,
    schema: SchemaRef,
}

impl PartitionStream for ImageStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let input = Arc::clone(&self.input);
        let spec = (*self.spec).clone();
        let output = Arc::clone(&self.schema);
        let batch_size = ctx.session_config().batch_size();
        let folded = futures_util::stream::once(async move {
            let reservation =
                MemoryConsumer::new("walaudit image fold").register(ctx.memory_pool());
            let mut changes = input.execute(0, Arc::clone(&ctx))?;
            let mut fold = ImageFold::new(spec, &changes.schema(), output, reservation)?;
            while let Some(batch) = changes.try_next().await? {
                fold.push(&batch)?;
            }
            Ok::<_, DataFusionError>(futures_util::stream::iter(fold.finish(batch_size)))
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            folded.boxed(),
        ))
    }
}
