//! The replication source: connection, protocol frames, slot and publication management.
