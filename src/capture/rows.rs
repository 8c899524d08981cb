//! Row diffs: pgoutput tuples to [`Change`]s with before image, changed and unavailable columns.
//!
//! * An unchanged TOASTed value (`u`) is filled from the before image when the source sent the
//!   whole old row (REPLICA IDENTITY FULL); otherwise it becomes NULL **and** its column is
//!   listed in `unavailable`.
//! * `changed` is known only with a whole before image: the columns whose text differs.

use std::sync::Arc;

use crate::capture::{Before, CaptureError, Change, Op, TableInfo};
use crate::decode::{Cell, OldKind, Tuple};

/// Check that a tuple has one cell per column of the table shape it is read with.
fn check_width(table: &TableInfo, tuple: &Tuple) -> Result<(), CaptureError> {
    if tuple.len() == table.columns.len() {
        Ok(())
    } else {
        Err(CaptureError::ColumnCount {
            table: table.qualified_name(),
            expected: table.columns.len(),
            found: tuple.len(),
        })
    }
}

/// Replace unsent values by NULL, listing their columns in `unavailable`.
fn mark_unsent(row: &mut [Cell], unavailable: &mut Vec<u16>) {
    for (i, cell) in row.iter_mut().enumerate() {
        if *cell == Cell::UnchangedToast {
            *cell = Cell::Null;
            unavailable.push(i as u16);
        }
    }
}

fn change(table: &Arc<TableInfo>, op: Op, row: Tuple) -> Change {
    Change {
        table: Arc::clone(table),
        op,
        seq: 0,
        row,
        before: None,
        changed: None,
        unavailable: Vec::new(),
        truncate_options: 0,
    }
}

pub fn insert(table: &Arc<TableInfo>, new: Tuple) -> Result<Change, CaptureError> {
    check_width(table, &new)?;
    let mut c = change(table, Op::Insert, new);
    mark_unsent(&mut c.row, &mut c.unavailable);
    Ok(c)
}

pub fn update(
    table: &Arc<TableInfo>,
    old: Option<(OldKind, Tuple)>,
    new: Tuple,
) -> Result<Change, CaptureError> {
    check_width(table, &new)?;
    let mut c = change(table, Op::Update, new);
    match old {
        Some((OldKind::Full, mut before)) => {
            check_width(table, &before)?;
            // An old value that is itself unsent is unknown: not comparable, stays NULL.
            let mut unknown_before = Vec::new();
            mark_unsent(&mut before, &mut unknown_before);
            let mut changed = Vec::new();
            for (i, cell) in c.row.iter_mut().enumerate() {
                let unknown = unknown_before.contains(&(i as u16));
                if *cell == Cell::UnchangedToast && !unknown {
                    *cell = before[i].clone();
                } else if *cell == Cell::UnchangedToast {
                    *cell = Cell::Null;
                    c.unavailable.push(i as u16);
                } else if !unknown && *cell != before[i] {
                    changed.push(i as u16);
                }
            }
            c.changed = Some(changed);
            c.before = Some(Before {
                key_only: false,
                row: before,
            });
        }
        Some((OldKind::Key, before)) => {
            check_width(table, &before)?;
            mark_unsent(&mut c.row, &mut c.unavailable);
            c.before = Some(Before {
                key_only: true,
                row: before,
            });
        }
        None => mark_unsent(&mut c.row, &mut c.unavailable),
    }
    Ok(c)
}

pub fn delete(table: &Arc<TableInfo>, old: (OldKind, Tuple)) -> Result<Change, CaptureError> {
    check_width(table, &old.1)?;
    let mut c = change(table, Op::Delete, old.1);
    mark_unsent(&mut c.row, &mut c.unavailable);
    Ok(c)
}

pub fn truncate(table: &Arc<TableInfo>, options: u8) -> Change {
    let mut c = change(table, Op::Truncate, Vec::new());
    c.truncate_options = options;
    c
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::capture::ColumnInfo;
    use crate::decode::{PgType, ReplicaIdentity};

    fn table() -> Arc<TableInfo> {
        let col = |name: &str, is_key| ColumnInfo {
            name: name.into(),
            type_oid: 25,
            type_modifier: -1,
            is_key,
            pg_type: PgType::Text,
        };
        Arc::new(TableInfo {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
            replica_identity: ReplicaIdentity::Full,
            columns: vec![col("id", true), col("body", false), col("note", false)],
        })
    }

    fn t(s: &'static str) -> Cell {
        Cell::Text(Bytes::from_static(s.as_bytes()))
    }

    #[test]
    fn full_before_fills_toast_and_finds_changed() {
        let c = update(
            &table(),
            Some((OldKind::Full, vec![t("1"), t("big"), t("a")])),
            vec![t("1"), Cell::UnchangedToast, t("b")],
        )
        .unwrap();
        assert_eq!(c.row, vec![t("1"), t("big"), t("b")]);
        assert_eq!(c.changed, Some(vec![2]));
        assert!(c.unavailable.is_empty());
        assert!(!c.before.unwrap().key_only);
    }

    #[test]
    fn toast_without_before_is_unavailable_not_null() {
        let c = update(&table(), None, vec![t("1"), Cell::UnchangedToast, t("b")]).unwrap();
        assert_eq!(c.row, vec![t("1"), Cell::Null, t("b")]);
        assert_eq!(c.unavailable, vec![1]);
        assert_eq!(c.changed, None);
    }

    #[test]
    fn key_change_keeps_key_before_and_unknown_changed() {
        let c = update(
            &table(),
            Some((OldKind::Key, vec![t("1"), Cell::Null, Cell::Null])),
            vec![t("2"), Cell::UnchangedToast, t("b")],
        )
        .unwrap();
        let before = c.before.unwrap();
        assert!(before.key_only);
        assert_eq!(before.row[0], t("1"));
        assert_eq!(c.changed, None);
        assert_eq!(c.unavailable, vec![1]);
    }

    #[test]
    fn width_mismatch_is_an_error() {
        let err = insert(&table(), vec![t("1")]).unwrap_err();
        assert!(err.to_string().contains("public.t"), "{err}");
    }
}
