//! The fold behind `current` and `as_of`: a change log in `(_lsn, _seq)` order (a snapshot read
//! before a change at equal `_lsn`) in, the table's rows at the end of it out.
//!
//! ```text
//!  batch ─► rows of the source columns (arrow-row, byte-comparable) ─► per change:
//!     keyed table   key ─► image   r/c/u replace, d removes, u with a changed key moves
//!     multiset      row ─► copies  r/c add one, d removes one equal to its image,
//!                                  u replaces one equal to its `_before`
//!     t             empties the state
//!     a finished load's first consistent point: empties the state before its reads
//!  end of input ─► images (copies repeated) as batches: source columns, _lsn, _commit_ts,
//!                  _actor, _unavailable
//! ```
//!
//! # Invariants
//! * A column an update did not carry (unchanged TOAST, listed in `_unavailable`) takes its
//!   value from the key's previous image, which is the old key's image when the update changed
//!   the key. Only a column no earlier image holds stays null, and the image's `_unavailable`
//!   names it. Values are carried only for string, binary and array columns: those are the
//!   columns Postgres stores out of line; any other column listed in `_unavailable` holds a
//!   value outside the lake type's range, which no earlier image may stand in for.
//! * A multiset (a table without a key, or with REPLICA IDENTITY FULL) keeps the source's
//!   duplicates: rows are compared on every source column, NULL equal to NULL.
//! * Memory grows with the rows of the result, never with the length of the change log, and is
//!   reserved from the session's pool, so an oversized result fails instead of growing.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, StructArray, new_null_array};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::compute::cast;
use deltalake::arrow::row::{OwnedRow, RowConverter, Rows, SortField};
use deltalake::datafusion::error::{DataFusionError, Result};
use deltalake::datafusion::execution::memory_pool::MemoryReservation;

/// Output column: the LSN of the change that produced the image.
pub const LSN: &str = "_lsn";
/// Output column: its commit time.
pub const COMMIT_TS: &str = "_commit_ts";
/// Output column: its actor.
pub const ACTOR: &str = "_actor";
/// Output column: the columns whose true value the image does not hold.
pub const UNAVAILABLE: &str = "_unavailable";
/// Bytes counted per image besides its row bytes (map entry, metadata).
const IMAGE_OVERHEAD: usize = 96;

/// What the fold needs to know about a change table.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// The source columns, in table order.
    pub source_columns: Vec<String>,
    /// The key columns (a subset of the source columns); ignored for a multiset.
    pub key_columns: Vec<String>,
    /// Rows are a multiset compared on every column (no key, or REPLICA IDENTITY FULL).
    pub multiset: bool,
    /// The first consistent point of every finished historical load of the table, ascending.
    /// A load's rows replace everything before it: the state is emptied before the first
    /// change at or after that `_lsn` (its own snapshot reads come first there).
    pub load_starts: Vec<i64>,
}

/// The output schema of the images of a change log whose scan has `input`'s schema.
pub fn output_schema(spec: &ImageSpec, input: &Schema) -> Result<SchemaRef> {
    let mut fields = Vec::with_capacity(spec.source_columns.len() + 4);
    for name in &spec.source_columns {
        let field = input.field_with_name(name)?;
        fields.push(Field::new(name, field.data_type().clone(), true));
    }
    fields.push(Field::new(LSN, DataType::Int64, false));
    fields.push(Field::new(COMMIT_TS, commit_ts_type(), true));
    fields.push(Field::new(ACTOR, DataType::Utf8, true));
    fields.push(Field::new(
        UNAVAILABLE,
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        false,
    ));
    Ok(Arc::new(Schema::new(fields)))
}

fn commit_ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The change that produced an image (or the latest copy of a multiset row).
#[derive(Clone, Debug)]
struct Meta {
    lsn: i64,
    commit_ts: Option<i64>,
    actor: Option<String>,
    /// Indices of the source columns the image does not hold, ascending.
    unavailable: Vec<usize>,
}

#[derive(Debug)]
struct Keyed {
    row: OwnedRow,
    meta: Meta,
}

#[derive(Debug)]
struct Copies {
    count: u64,
    meta: Meta,
}

#[derive(Debug)]
enum State {
    /// Key row → image.
    Keyed(HashMap<OwnedRow, Keyed>),
    /// Whole row → copies.
    Multiset(HashMap<OwnedRow, Copies>),
}

/// Column positions in the input schema.
#[derive(Debug)]
struct Input {
    source: Vec<usize>,
    key: Vec<usize>,
    op: usize,
    lsn: usize,
    commit_ts: usize,
    actor: usize,
    before: usize,
    unavailable: Option<usize>,
}

/// Folds a sorted change log into the table's rows.
#[derive(Debug)]
pub struct ImageFold {
    spec: ImageSpec,
    input: Input,
    /// Types of the source columns (as scanned).
    types: Vec<DataType>,
    /// Whether a column listed in an update's `_unavailable` may take the previous image's value.
    carry: Vec<bool>,
    rows: RowConverter,
    keys: RowConverter,
    state: State,
    /// Index of the next load start in `spec.load_starts`.
    next_start: usize,
    bytes: usize,
    reservation: MemoryReservation,
    output: SchemaRef,
}

impl ImageFold {
    pub fn new(
        spec: ImageSpec,
        input: &Schema,
        output: SchemaRef,
        reservation: MemoryReservation,
    ) -> Result<ImageFold> {
        let index = |name: &str| input.index_of(name).map_err(DataFusionError::from);
        let source = spec
            .source_columns
            .iter()
            .map(|c| index(c))
            .collect::<Result<Vec<_>>>()?;
        let key = if spec.multiset {
            source.clone()
        } else {
            spec.key_columns
                .iter()
                .map(|c| index(c))
                .collect::<Result<Vec<_>>>()?
        };
        let types: Vec<DataType> = source
            .iter()
            .map(|&i| input.field(i).data_type().clone())
            .collect();
        let carry = types.iter().map(carried).collect();
        let sort_fields = |cols: &[usize]| -> Vec<SortField> {
            cols.iter()
                .map(|&i| SortField::new(input.field(i).data_type().clone()))
                .collect()
        };
        let rows = RowConverter::new(sort_fields(&source))?;
        let keys = RowConverter::new(sort_fields(&key))?;
        let positions = Input {
            source,
            key,
            op: index("_op")?,
            lsn: index("_lsn")?,
            commit_ts: index("_commit_ts")?,
            actor: index("_actor")?,
            before: index("_before")?,
            unavailable: input.index_of("_unavailable").ok(),
        };
        let state = if spec.multiset {
            State::Multiset(HashMap::new())
        } else {
            State::Keyed(HashMap::new())
        };
        Ok(ImageFold {
            spec,
            input: positions,
            types,
            carry,
            rows,
            keys,
            state,
            next_start: 0,
            bytes: 0,
            reservation,
            output,
        })
    }

    /// Applies the changes of `batch`, which follow every change pushed before.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<()> {
        let n = batch.num_rows();
        if n == 0 {
            return Ok(());
        }
        let source: Vec<ArrayRef> = self
            .input
            .source
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        let ops = utf8(batch.column(self.input.op))?;
        let lsns = cast(batch.column(self.input.lsn), &DataType::Int64)?;
        let lsns = lsns.as_primitive::<Int64Type>();
        let commit_ts = cast(batch.column(self.input.commit_ts), &commit_ts_type())?;
        let commit_ts = commit_ts.as_primitive::<TimestampMicrosecondType>();
        let actors = utf8(batch.column(self.input.actor))?;
        let unavailable = match self.input.unavailable {
            Some(i) => Some(self.unavailable_indices(batch.column(i))?),
            None => None,
        };
        let before = batch
            .column(self.input.before)
            .as_any()
            .downcast_ref::<StructArray>()
            .ok_or_else(|| DataFusionError::Plan("_before is not a struct column".into()))?;
        let has_before = (0..n).any(|i| before.is_valid(i) && ops.value(i) == "u");

        let rows = self.rows.convert_columns(&source)?;
        let meta = |i: usize| Meta {
            lsn: lsns.value(i),
            commit_ts: commit_ts.is_valid(i).then(|| commit_ts.value(i)),
            actor: actors.is_valid(i).then(|| actors.value(i).to_owned()),
            unavailable: unavailable
                .as_ref()
                .map(|u| u[i].clone())
                .unwrap_or_default(),
        };

        match self.spec.multiset {
            true => {
                let before_rows = if has_before {
                    Some(
                        self.rows
                            .convert_columns(&self.before_columns(before, true)?)?,
                    )
                } else {
                    None
                };
                for i in 0..n {
                    self.reset_at(lsns.value(i));
                    if ops.is_null(i) {
                        continue;
                    }
                    match ops.value(i) {
                        "t" => self.clear(),
                        "r" | "c" => self.add_copy(rows.row(i).owned(), meta(i)),
                        "d" => self.remove_copy(&rows.row(i).owned()),
                        "u" => {
                            if let Some(old) = before_rows.as_ref().filter(|_| before.is_valid(i)) {
                                self.remove_copy(&old.row(i).owned());
                            }
                            self.add_copy(rows.row(i).owned(), meta(i));
                        }
                        _ => {}
                    }
                }
            }
            false => {
                let key_arrays: Vec<ArrayRef> = self
                    .input
                    .key
                    .iter()
                    .map(|&i| Arc::clone(batch.column(i)))
                    .collect();
                let keys = self.keys.convert_columns(&key_arrays)?;
                let before_keys = if has_before {
                    Some(
                        self.keys
                            .convert_columns(&self.before_columns(before, false)?)?,
                    )
                } else {
                    None
                };
                for i in 0..n {
                    self.reset_at(lsns.value(i));
                    if ops.is_null(i) {
                        continue;
                    }
                    let key = keys.row(i);
                    match ops.value(i) {
                        "t" => self.clear(),
                        "r" | "c" => {
                            let image = Keyed {
                                row: rows.row(i).owned(),
                                meta: meta(i),
                            };
                            self.put(key.owned(), image);
                        }
                        "d" => {
                            self.remove_key(&key.owned());
                        }
                        "u" => {
                            let old_key = before_keys
                                .as_ref()
                                .filter(|_| before.is_valid(i))
                                .map(|b| b.row(i))
                                .filter(|old| *old != key);
                            let meta = meta(i);
                            let needs_previous = meta.unavailable.iter().any(|&c| self.carry[c]);
                            let previous = match old_key {
                                Some(old) => self.remove_key(&old.owned()),
                                None if needs_previous => self.get(&key.owned()),
                                None => None,
                            };
                            let image = self.update_image(&source, &rows, i, meta, previous)?;
                            self.put(key.owned(), image);
                        }
                        _ => {}
                    }
                }
            }
        }
        self.reservation.try_resize(self.bytes)?;
        Ok(())
    }

    /// The image of update `i`, with the columns it did not carry taken from `previous`.
    fn update_image(
        &self,
        source: &[ArrayRef],
        rows: &Rows,
        i: usize,
        mut meta: Meta,
        previous: Option<(OwnedRow, Meta)>,
    ) -> Result<Keyed> {
        let fill: Vec<usize> = match &previous {
            Some((_, prev)) => meta
                .unavailable
                .iter()
                .copied()
                .filter(|&c| self.carry[c] && !prev.unavailable.contains(&c))
                .collect(),
            None => Vec::new(),
        };
        let Some((prev_row, _)) = previous.filter(|_| !fill.is_empty()) else {
            return Ok(Keyed {
                row: rows.row(i).owned(),
                meta,
            });
        };
        let prev_arrays = self.rows.convert_rows([prev_row.row()])?;
        let mut arrays: Vec<ArrayRef> = source.iter().map(|a| a.slice(i, 1)).collect();
        for &c in &fill {
            arrays[c] = Arc::clone(&prev_arrays[c]);
        }
        meta.unavailable.retain(|c| !fill.contains(c));
        let row = self.rows.convert_columns(&arrays)?.row(0).owned();
        Ok(Keyed { row, meta })
    }

    /// The `_before` fields of the source columns (all of them, or the key's), in the scanned
    /// types; a field `_before` lacks is null.
    fn before_columns(&self, before: &StructArray, all: bool) -> Result<Vec<ArrayRef>> {
        let names: &[String] = if all {
            &self.spec.source_columns
        } else {
            &self.spec.key_columns
        };
        names
            .iter()
            .map(|name| {
                let position = self.spec.source_columns.iter().position(|c| c == name);
                let ty = &self.types[position.expect("key columns are source columns")];
                match before.column_by_name(name) {
                    Some(child) if child.data_type() == ty => Ok(Arc::clone(child)),
                    Some(child) => Ok(cast(child, ty)?),
                    None => Ok(new_null_array(ty, before.len())),
                }
            })
            .collect()
    }

    /// The source-column indices listed in each row's `_unavailable`.
    fn unavailable_indices(&self, column: &ArrayRef) -> Result<Vec<Vec<usize>>> {
        let list = cast(
            column,
            &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        )?;
        let list = list.as_list::<i32>();
        let mut out = Vec::with_capacity(list.len());
        for i in 0..list.len() {
            let mut columns = Vec::new();
            if list.is_valid(i) {
                let names = list.value(i);
                let names = names.as_string::<i32>();
                for name in names.iter().flatten() {
                    if let Some(c) = self.spec.source_columns.iter().position(|s| s == name) {
                        columns.push(c);
                    }
                }
                columns.sort_unstable();
            }
            out.push(columns);
        }
        Ok(out)
    }

    /// Empties the state when `lsn` reaches the next load start.
    fn reset_at(&mut self, lsn: i64) {
        let starts = &self.spec.load_starts;
        if starts.get(self.next_start).is_some_and(|&s| lsn >= s) {
            while starts.get(self.next_start).is_some_and(|&s| lsn >= s) {
                self.next_start += 1;
            }
            self.clear();
        }
    }

    fn clear(&mut self) {
        match &mut self.state {
            State::Keyed(map) => map.clear(),
            State::Multiset(map) => map.clear(),
        }
        self.bytes = 0;
    }

    fn put(&mut self, key: OwnedRow, image: Keyed) {
        let State::Keyed(map) = &mut self.state else {
            unreachable!("keyed tables fold into a keyed state")
        };
        let added = key.as_ref().len() + image.row.as_ref().len() + IMAGE_OVERHEAD;
        match map.entry(key) {
            Entry::Occupied(mut slot) => {
                let old = slot.get().row.as_ref().len() + slot.key().as_ref().len();
                slot.insert(image);
                self.bytes = (self.bytes + added).saturating_sub(old + IMAGE_OVERHEAD);
            }
            Entry::Vacant(slot) => {
                slot.insert(image);
                self.bytes += added;
            }
        }
    }

    fn get(&self, key: &OwnedRow) -> Option<(OwnedRow, Meta)> {
        let State::Keyed(map) = &self.state else {
            return None;
        };
        map.get(key).map(|k| (k.row.clone(), k.meta.clone()))
    }

    fn remove_key(&mut self, key: &OwnedRow) -> Option<(OwnedRow, Meta)> {
        let State::Keyed(map) = &mut self.state else {
            return None;
        };
        let removed = map.remove(key)?;
        self.bytes = self
            .bytes
            .saturating_sub(key.as_ref().len() + removed.row.as_ref().len() + IMAGE_OVERHEAD);
        Some((removed.row, removed.meta))
    }

    fn add_copy(&mut self, row: OwnedRow, meta: Meta) {
        let State::Multiset(map) = &mut self.state else {
            unreachable!("multisets fold into a multiset state")
        };
        let size = row.as_ref().len() + IMAGE_OVERHEAD;
        match map.entry(row) {
            Entry::Occupied(mut slot) => {
                let copies = slot.get_mut();
                copies.count += 1;
                copies.meta = meta;
            }
            Entry::Vacant(slot) => {
                slot.insert(Copies { count: 1, meta });
                self.bytes += size;
            }
        }
    }

    /// Removes one copy equal to `row`; a row the state does not hold (its insert predates
    /// the lake) is ignored.
    fn remove_copy(&mut self, row: &OwnedRow) {
        let State::Multiset(map) = &mut self.state else {
            unreachable!("multisets fold into a multiset state")
        };
        if let Some(copies) = map.get_mut(row) {
            copies.count -= 1;
            if copies.count == 0 {
                map.remove(row);
                self.bytes = self
                    .bytes
                    .saturating_sub(row.as_ref().len() + IMAGE_OVERHEAD);
            }
        }
    }

    /// The images, `batch_size` rows per batch (a multiset row repeated once per copy).
    pub fn finish(self, batch_size: usize) -> Images {
        let entries: Box<dyn Iterator<Item = (OwnedRow, Meta, u64)> + Send> = match self.state {
            State::Keyed(map) => Box::new(map.into_values().map(|k| (k.row, k.meta, 1))),
            State::Multiset(map) => {
                Box::new(map.into_iter().map(|(row, c)| (row, c.meta, c.count)))
            }
        };
        Images {
            entries,
            pending: None,
            rows: self.rows,
            names: self.spec.source_columns,
            output: self.output,
            batch_size: batch_size.max(1),
            _reservation: self.reservation,
        }
    }
}

/// A string column (any string encoding) as `Utf8`.
fn utf8(array: &ArrayRef) -> Result<StringArray> {
    let utf8 = cast(array, &DataType::Utf8)?;
    Ok(utf8.as_string::<i32>().clone())
}

/// Whether an update's unavailable value of this type can only be unchanged TOAST.
fn carried(ty: &DataType) -> bool {
    matches!(
        ty,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
    )
}

mod emit;
#[cfg(test)]
mod tests;

pub use emit::Images;
