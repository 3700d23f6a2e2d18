//! The state of one open tumbling window: a hash table from key to slot, and the
//! accumulators of every slot in one flat vector (8 bytes per aggregate per key), so that
//! updating a count is a hash probe and an add.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanBufferBuilder, Float64Array, Int64Array};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use foldhash::fast::RandomState;
use hashbrown::HashMap;
use weir_common::spec::AggregateFunction;

/// How an aggregate accumulates, decided once from its function and input type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Accumulator {
    Count,
    SumInt,
    SumFloat,
    MinInt,
    MaxInt,
    MinFloat,
    MaxFloat,
}

impl Accumulator {
    pub fn new(f: AggregateFunction, input: Option<&DataType>) -> Self {
        let float = input.is_some_and(|t| t.is_floating());
        match (f, float) {
            (AggregateFunction::Count, _) => Accumulator::Count,
            (AggregateFunction::Sum, false) => Accumulator::SumInt,
            (AggregateFunction::Sum, true) => Accumulator::SumFloat,
            (AggregateFunction::Min, false) => Accumulator::MinInt,
            (AggregateFunction::Min, true) => Accumulator::MinFloat,
            (AggregateFunction::Max, false) => Accumulator::MaxInt,
            (AggregateFunction::Max, true) => Accumulator::MaxFloat,
        }
    }

    /// Folds one value (or another partial result: every accumulator here is associative)
    /// into `v`. Floats travel as their bits; a count's partial result is its count.
    #[inline]
    pub fn fold(self, v: &mut i64, x: i64) {
        let float = |f: fn(f64, f64) -> f64, v: &mut i64| {
            *v = f(f64::from_bits(*v as u64), f64::from_bits(x as u64)).to_bits() as i64;
        };
        match self {
            Accumulator::Count | Accumulator::SumInt => *v = v.wrapping_add(x),
            Accumulator::MinInt => *v = (*v).min(x),
            Accumulator::MaxInt => *v = (*v).max(x),
            Accumulator::SumFloat => float(|a, b| a + b, v),
            Accumulator::MinFloat => float(f64::min, v),
            Accumulator::MaxFloat => float(f64::max, v),
        }
    }

    fn is_float(self) -> bool {
        matches!(
            self,
            Accumulator::SumFloat | Accumulator::MinFloat | Accumulator::MaxFloat
        )
    }
}

/// One aggregate's input values for a batch, as i64 or f64.
pub enum AggInput {
    None,
    Int(Int64Array),
    Float(Float64Array),
}

impl AggInput {
    pub fn from_column(acc: Accumulator, col: &ArrayRef) -> Result<Self, ArrowError> {
        Ok(if acc == Accumulator::Count {
            AggInput::None
        } else if acc.is_float() {
            AggInput::Float(cast(col, &DataType::Float64)?.as_primitive::<Float64Type>().clone())
        } else {
            AggInput::Int(to_int64(col)?)
        })
    }
}

/// An integer-like column as i64: u64 reinterpreted bit for bit (a cast would turn values
/// above i64::MAX into nulls), anything else cast.
fn to_int64(col: &ArrayRef) -> Result<Int64Array, ArrowError> {
    if col.data_type() == &DataType::UInt64 {
        return Ok(col.as_primitive::<UInt64Type>().unary::<_, Int64Type>(|v| v as i64));
    }
    Ok(cast(col, &DataType::Int64)?.as_primitive::<Int64Type>().clone())
}

/// Keys of one batch in the form the window tables use.
pub enum BatchKeys {
    /// A single non-nullable integer-like column, as i64.
    Int(Vec<i64>),
    /// Anything else, in Arrow's row format.
    Rows(Rows),
}

/// Keys as the window tables store them.
pub enum KeyTable {
    Int {
        index: HashMap<i64, u32, RandomState>,
        keys: Vec<i64>,
    },
    Rows {
        index: HashMap<Box<[u8]>, u32, RandomState>,
        keys: Vec<Box<[u8]>>,
    },
}

pub struct WindowState {
    table: KeyTable,
    /// `slots * accumulators.len()` words; floats stored as their bits.
    values: Vec<i64>,
    /// Whether a slot's aggregate has seen a non-null value (sum/min/max are null if not).
    seen: Vec<bool>,
}

impl WindowState {
    pub fn new(int_keys: bool) -> Self {
        let table = if int_keys {
            KeyTable::Int {
                index: HashMap::default(),
                keys: Vec::new(),
            }
        } else {
            KeyTable::Rows {
                index: HashMap::default(),
                keys: Vec::new(),
            }
        };
        Self {
            table,
            values: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        match &self.table {
            KeyTable::Int { keys, .. } => keys.len(),
            KeyTable::Rows { keys, .. } => keys.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Folds rows `rows` of a batch into the window.
    pub fn update(
        &mut self,
        keys: &BatchKeys,
        rows: std::ops::Range<usize>,
        accs: &[Accumulator],
        inputs: &[AggInput],
    ) {
        let n = accs.len();
        let only_count = accs.iter().all(|a| *a == Accumulator::Count);
        for row in rows {
            let (slot, fresh) = self.slot(keys, row);
            let base = slot * n;
            if fresh {
                self.values.extend(accs.iter().map(|a| initial(*a)));
                self.seen.extend(std::iter::repeat_n(false, n));
            }
            if only_count {
                for v in &mut self.values[base..base + n] {
                    *v += 1;
                }
                continue;
            }
            for (a, (acc, input)) in accs.iter().zip(inputs).enumerate() {
                let v = &mut self.values[base + a];
                match (acc, input) {
                    (Accumulator::Count, _) => *v += 1,
                    (_, AggInput::Int(arr)) if arr.is_valid(row) => {
                        acc.fold(v, arr.value(row));
                        self.seen[base + a] = true;
                    }
                    (_, AggInput::Float(arr)) if arr.is_valid(row) => {
                        acc.fold(v, arr.value(row).to_bits() as i64);
                        self.seen[base + a] = true;
                    }
                    _ => {}
                }
            }
        }
    }

    #[inline]
    fn slot(&mut self, keys: &BatchKeys, row: usize) -> (usize, bool) {
        match (&mut self.table, keys) {
            (KeyTable::Int { index, keys: stored }, BatchKeys::Int(k)) => {
                let next = stored.len() as u32;
                let slot = *index.entry(k[row]).or_insert(next);
                if slot == next {
                    stored.push(k[row]);
                }
                (slot as usize, slot == next)
            }
            (KeyTable::Rows { index, keys: stored }, BatchKeys::Rows(r)) => {
                let bytes = r.row(row);
                if let Some(&slot) = index.get(bytes.as_ref()) {
                    return (slot as usize, false);
                }
                let slot = stored.len() as u32;
                let owned: Box<[u8]> = bytes.as_ref().into();
                stored.push(owned.clone());
                index.insert(owned, slot);
                (slot as usize, true)
            }
            _ => unreachable!("key encoding is fixed per operator"),
        }
    }

    /// Every slot as (key bytes, accumulator words, seen flags), in slot order. Integer
    /// keys are 8 bytes big-endian, other keys Arrow's row format.
    pub fn entries(&self, n_accs: usize) -> impl Iterator<Item = (std::borrow::Cow<'_, [u8]>, &[i64], &[bool])> {
        let keys: Box<dyn Iterator<Item = std::borrow::Cow<'_, [u8]>>> = match &self.table {
            KeyTable::Int { keys, .. } => {
                Box::new(keys.iter().map(|k| std::borrow::Cow::Owned(k.to_be_bytes().to_vec())))
            }
            KeyTable::Rows { keys, .. } => Box::new(keys.iter().map(|k| std::borrow::Cow::Borrowed(&k[..]))),
        };
        keys.zip(self.values.chunks_exact(n_accs.max(1)))
            .zip(self.seen.chunks_exact(n_accs.max(1)))
            .map(|((k, v), s)| (k, v, s))
    }

    /// Folds a partial result for the key `key` (as [`Self::entries`] encodes it) into
    /// the window.
    pub fn merge_entry(&mut self, key: &[u8], values: &[i64], seen: &[bool], accs: &[Accumulator]) {
        let n = accs.len();
        let (slot, fresh) = match &mut self.table {
            KeyTable::Int { index, keys } => {
                let k = i64::from_be_bytes(key.try_into().expect("integer keys are 8 bytes"));
                let next = keys.len() as u32;
                let slot = *index.entry(k).or_insert(next);
                if slot == next {
                    keys.push(k);
                }
                (slot as usize, slot == next)
            }
            KeyTable::Rows { index, keys } => match index.get(key) {
                Some(&slot) => (slot as usize, false),
                None => {
                    let slot = keys.len() as u32;
                    let owned: Box<[u8]> = key.into();
                    keys.push(owned.clone());
                    index.insert(owned, slot);
                    (slot as usize, true)
                }
            },
        };
        if fresh {
            self.values.extend(accs.iter().map(|a| initial(*a)));
            self.seen.extend(std::iter::repeat_n(false, n));
        }
        let base = slot * n;
        fold_partial(
            accs,
            &mut self.values[base..base + n],
            &mut self.seen[base..base + n],
            values,
            seen,
        );
    }

    /// The key columns, in slot order.
    pub fn key_columns(
        &self,
        key_types: &[DataType],
        converter: Option<&RowConverter>,
    ) -> Result<Vec<ArrayRef>, ArrowError> {
        match &self.table {
            KeyTable::Int { keys, .. } => {
                let ints = Int64Array::from(keys.clone());
                let t = &key_types[0];
                let col: ArrayRef = if t == &DataType::UInt64 {
                    Arc::new(ints.unary::<_, UInt64Type>(|v| v as u64))
                } else {
                    cast(&ints, t)?
                };
                Ok(vec![col])
            }
            KeyTable::Rows { keys, .. } => {
                let converter = converter.expect("row keys have a converter");
                let parser = converter.parser();
                converter.convert_rows(keys.iter().map(|k| parser.parse(k)))
            }
        }
    }

    /// The output column of aggregate `a`.
    pub fn aggregate_column(
        &self,
        a: usize,
        acc: Accumulator,
        n_accs: usize,
        out_type: &DataType,
    ) -> Result<ArrayRef, ArrowError> {
        let slots = self.len();
        let words = (0..slots).map(|s| self.values[s * n_accs + a]);
        if acc == Accumulator::Count {
            return Ok(Arc::new(Int64Array::from_iter_values(words)));
        }
        let mut valid = BooleanBufferBuilder::new(slots);
        for s in 0..slots {
            valid.append(self.seen[s * n_accs + a]);
        }
        let nulls = Some(NullBuffer::new(valid.finish()));
        let col: ArrayRef = if acc.is_float() {
            Arc::new(Float64Array::new(
                words.map(|w| f64::from_bits(w as u64)).collect(),
                nulls,
            ))
        } else {
            Arc::new(Int64Array::new(words.collect(), nulls))
        };
        if col.data_type() == out_type {
            Ok(col)
        } else if out_type == &DataType::UInt64 {
            let ints = col.as_any().downcast_ref::<Int64Array>().expect("i64");
            Ok(Arc::new(ints.unary::<_, UInt64Type>(|v| v as u64)))
        } else {
            cast(&col, out_type)
        }
    }
}

/// Folds one key's partial result (`values`, `seen`) into another (`into`, `into_seen`).
/// A sum/min/max that has seen no value contributes nothing; a count always does.
pub fn fold_partial(accs: &[Accumulator], into: &mut [i64], into_seen: &mut [bool], values: &[i64], seen: &[bool]) {
    for (a, acc) in accs.iter().enumerate() {
        if *acc == Accumulator::Count || seen[a] {
            acc.fold(&mut into[a], values[a]);
            into_seen[a] |= seen[a];
        }
    }
}

pub fn initial(acc: Accumulator) -> i64 {
    match acc {
        Accumulator::Count | Accumulator::SumInt => 0,
        Accumulator::SumFloat => 0f64.to_bits() as i64,
        Accumulator::MinInt => i64::MAX,
        Accumulator::MaxInt => i64::MIN,
        Accumulator::MinFloat => f64::INFINITY.to_bits() as i64,
        Accumulator::MaxFloat => f64::NEG_INFINITY.to_bits() as i64,
    }
}

/// Chooses the key encoding for a set of key columns.
pub fn key_converter(key_fields: &[(DataType, bool)]) -> Result<Option<RowConverter>, ArrowError> {
    if uses_int_keys(key_fields) {
        return Ok(None);
    }
    RowConverter::new(key_fields.iter().map(|(t, _)| SortField::new(t.clone())).collect()).map(Some)
}

pub fn uses_int_keys(key_fields: &[(DataType, bool)]) -> bool {
    matches!(key_fields, [(t, false)] if t.is_integer() || matches!(t, DataType::Timestamp(_, _) | DataType::Boolean))
}

/// Encodes a batch's key columns.
pub fn encode_keys(cols: &[ArrayRef], converter: Option<&RowConverter>) -> Result<BatchKeys, ArrowError> {
    match converter {
        Some(c) => Ok(BatchKeys::Rows(c.convert_columns(cols)?)),
        None => Ok(BatchKeys::Int(to_int64(&cols[0])?.values().to_vec())),
    }
}
