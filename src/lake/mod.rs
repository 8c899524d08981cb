//! The audit lake: change-table schemas and Arrow row building (the Delta writer comes next).
