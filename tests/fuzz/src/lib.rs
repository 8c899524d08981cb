//! What the fuzz targets share: how an input's leading bytes choose the parser's parameters,
//! and the canonical text forms the round-trip checks write.
//!
//! Input layouts (the seeds in `corpus/<target>/` follow them; `src/decode/fuzz_seeds.rs` in
//! walaudit writes them):
//!
//! ```text
//!  pgoutput      [flags] [message]           flags bit 0: inside a streamed block (in_stream)
//!  copy_text     [columns] [cut] [data]      columns % 8 per row; data pushed `cut` bytes at a
//!  copy_binary   [columns] [cut] [data]        time (all at once when cut = 0)
//!  value_text    [type] [p] [s] [text]       type: see `pg_type`; p, s: numeric precision, scale
//!  value_binary  [kind] [p] [s] [bytes]      kind: see `binary_kind`
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};

use walaudit::decode::PgType;
use walaudit::decode::binary::BinaryKind;

/// The largest single allocation allowed while one input runs, per byte of input, and at
/// least: a length or count field must never make a parser reserve more than its input can
/// hold. Nothing a target legitimately does comes near it.
const ALLOC_PER_INPUT_BYTE: usize = 64;
const ALLOC_FLOOR: usize = 1 << 20;

static INPUT_LEN: AtomicUsize = AtomicUsize::new(0);

/// Starts one input: every target calls it first, which also links the allocator guard below.
pub fn input(data: &[u8]) {
    INPUT_LEN.store(data.len(), Ordering::Relaxed);
}

/// The system allocator, aborting (a crash libFuzzer saves the input of) on an allocation
/// larger than the input justifies. libFuzzer's own `-malloc_limit_mb` needs a sanitizer's
/// allocator hooks; the targets run without one (`-s none`).
pub struct BoundedAlloc;

fn check(size: usize) {
    // A panic is already a failure; printing it (a symbolized backtrace) may allocate a lot.
    if std::thread::panicking() {
        return;
    }
    let limit = INPUT_LEN
        .load(Ordering::Relaxed)
        .saturating_mul(ALLOC_PER_INPUT_BYTE)
        .max(ALLOC_FLOOR);
    if size > limit {
        // No allocation here: stderr is unbuffered, the message static.
        let _ = std::io::stderr().write_all(
            b"walaudit_fuzz: an allocation larger than the input can justify (BoundedAlloc)\n",
        );
        std::process::abort();
    }
}

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract.
unsafe impl GlobalAlloc for BoundedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's guarantees about `layout` are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: `ptr` came from `System` with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: BoundedAlloc = BoundedAlloc;

/// `data` in pieces of `cut` bytes (all of it in one piece when `cut` is 0).
pub fn pieces(data: &[u8], cut: u8) -> Vec<&[u8]> {
    match usize::from(cut) {
        0 => vec![data],
        n => data.chunks(n).collect(),
    }
}

/// The lake type a value_text input is parsed as: the low nibble picks the scalar type (modulo
/// 13), bit 4 wraps it in an array, bit 5 in an array of arrays; `p` and `s` are the precision
/// and scale of a decimal, raw (invalid ones included).
pub fn pg_type(selector: u8, p: u8, s: u8) -> PgType {
    let scalar = match (selector & 0x0f) % 13 {
        0 => PgType::Bool,
        1 => PgType::Int2,
        2 => PgType::Int4,
        3 => PgType::Int8,
        4 => PgType::Float4,
        5 => PgType::Float8,
        6 => PgType::Decimal {
            precision: p,
            scale: s as i8,
        },
        7 => PgType::Text,
        8 => PgType::Bytea,
        9 => PgType::Uuid,
        10 => PgType::Date,
        11 => PgType::Timestamp,
        _ => PgType::Timestamptz,
    };
    let mut ty = scalar;
    if selector & 0x10 != 0 {
        ty = PgType::Array(Box::new(ty));
    }
    if selector & 0x20 != 0 {
        ty = PgType::Array(Box::new(ty));
    }
    ty
}

/// The binary reader a value_binary input is decoded with (`selector` modulo 14).
pub fn binary_kind(selector: u8, p: u8, s: u8) -> BinaryKind {
    match selector % 14 {
        0 => BinaryKind::Bool,
        1 => BinaryKind::Int2,
        2 => BinaryKind::Int4,
        3 => BinaryKind::Int8,
        4 => BinaryKind::Oid,
        5 => BinaryKind::Float4,
        6 => BinaryKind::Float8,
        7 => BinaryKind::Decimal {
            precision: p,
            scale: s as i8,
        },
        8 => BinaryKind::Text,
        9 => BinaryKind::Jsonb,
        10 => BinaryKind::Uuid,
        11 => BinaryKind::Bytea,
        12 => BinaryKind::Date,
        _ => BinaryKind::Timestamp,
    }
}

/// A decimal scaled by `10^scale` as numeric text (`12340`, scale 2 → `123.40`).
pub fn decimal_text(value: i128, scale: u8) -> String {
    let digits = value.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if value < 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

/// A float as Postgres prints it: `NaN`, `Infinity`, `-Infinity`, or digits that read back as
/// the same number.
pub fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "Infinity".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Infinity".to_owned()
    } else {
        format!("{value:e}")
    }
}

/// Same float, NaN equal to NaN and 0 different from -0.
pub fn same_float(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

/// bytea in Postgres' hex output form.
pub fn bytea_text(bytes: &[u8]) -> String {
    let mut s = String::from("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A timestamp (microseconds since 1970) in the ISO text form the session's `DateStyle`
/// gives; with `+00` when `zoned`.
pub fn timestamp_text(micros: i64, zoned: bool) -> String {
    let iso = walaudit::decode::value::format_timestamp_micros(micros, false);
    let text = iso.replacen('T', " ", 1);
    if zoned { text + "+00" } else { text }
}
