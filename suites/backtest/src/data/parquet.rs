//! Parquet through polars' reader (files the page path of `plain` does not read): polars'
//! buffers taken as the bars' columns, and the writer.

use std::fs::File;
use std::path::Path;

use polars::prelude::{DataFrame, DataType, ParquetCompression, Series};

use super::check::{RawColumns, RowScan, VALIDATE_CHUNK, first_predecessor, first_step};
use super::{Bars, ColumnNames, DataError, FileFormat};

/// The six columns as polars arrays without nulls (sharing the frame's buffers).
pub(super) struct NoNullColumns {
    ts: polars::prelude::Int64Chunked,
    prices: [polars::prelude::Float64Chunked; 5],
}

/// [`NoNullColumns`] of a frame when every column is free of nulls, prices Float64 and
/// timestamps a nanosecond datetime (what [`write_parquet`] writes), all of one length;
/// `None` sends the loader down its general, converting path.
pub(super) fn no_null_columns(frame: &DataFrame, names: &ColumnNames) -> Option<NoNullColumns> {
    let series = |name: &str| frame.column(name).ok().map(|c| c.as_materialized_series());
    let ts = series(&names.timestamp)?;
    if !matches!(
        ts.dtype(),
        DataType::Datetime(polars::prelude::TimeUnit::Nanoseconds, _)
    ) {
        return None;
    }
    let ts = ts.datetime().ok()?.physical().clone();
    let [open, high, low, close, volume] = names.prices().map(|n| {
        series(n)
            .filter(|s| *s.dtype() == DataType::Float64)
            .and_then(|s| s.f64().ok())
            .cloned()
    });
    let prices = [open?, high?, low?, close?, volume?];
    let n = ts.len();
    (ts.null_count() == 0 && prices.iter().all(|c| c.null_count() == 0 && c.len() == n))
        .then_some(NoNullColumns { ts, prices })
}

impl NoNullColumns {
    /// Takes each buffer as a `Vec` when nothing else holds it (the frame dropped), copying
    /// only a buffer still shared; with the row checks' findings when they were made on the
    /// way (see [`NoNullColumns::copy_and_scan`]).
    pub(super) fn into_bars(self) -> (Bars, Option<RowScan>) {
        if let Some(copied) = self.copy_and_scan() {
            return (copied.0, Some(copied.1));
        }
        let [open, high, low, close, volume] = self.prices.map(take);
        let bars = Bars {
            ts_ns: take(self.ts),
            open,
            high,
            low,
            close,
            volume,
        };
        (bars, None)
    }

    /// A file of several row groups has one array per group and column, which must be copied
    /// into one `Vec` per column: copied a block of rows at a time, each block is checked
    /// ([`scan_rows`](super::check::scan_rows)) while it is still in cache, which saves a
    /// second pass over 48 MB at 1M bars. `None` when there is one array (no copy to fuse
    /// with) or the columns' arrays do not line up.
    fn copy_and_scan(&self) -> Option<(Bars, RowScan)> {
        let ts: Vec<&[i64]> = self
            .ts
            .downcast_iter()
            .map(|a| a.values().as_slice())
            .collect();
        let prices: Vec<Vec<&[f64]>> = self
            .prices
            .iter()
            .map(|c| c.downcast_iter().map(|a| a.values().as_slice()).collect())
            .collect();
        let lengths: Vec<usize> = ts.iter().map(|c| c.len()).collect();
        let aligned = prices
            .iter()
            .all(|p| p.iter().map(|c| c.len()).eq(lengths.iter().copied()));
        if ts.len() < 2 || !aligned {
            return None;
        }
        let n = self.ts.len();
        let mut bars = Bars::with_capacity(n);
        let all_ts: Vec<i64> = ts
            .iter()
            .flat_map(|c| c.iter().take(2))
            .take(2)
            .copied()
            .collect();
        let step = first_step(&all_ts);
        let mut previous = first_predecessor(&all_ts, step);
        let mut found = RowScan::CLEAN;
        for (k, ts_chunk) in ts.iter().enumerate() {
            let mut start = 0;
            while start < ts_chunk.len() {
                let end = (start + VALIDATE_CHUNK).min(ts_chunk.len());
                let block = RawColumns {
                    ts: &ts_chunk[start..end],
                    open: &prices[0][k][start..end],
                    high: &prices[1][k][start..end],
                    low: &prices[2][k][start..end],
                    close: &prices[3][k][start..end],
                    volume: &prices[4][k][start..end],
                };
                bars.ts_ns.extend_from_slice(block.ts);
                bars.open.extend_from_slice(block.open);
                bars.high.extend_from_slice(block.high);
                bars.low.extend_from_slice(block.low);
                bars.close.extend_from_slice(block.close);
                bars.volume.extend_from_slice(block.volume);
                found = found.and(block.scan_block(previous, step));
                previous = ts_chunk[end - 1];
                start = end;
            }
        }
        Some((bars, found))
    }
}

/// A column as one `Vec`: polars' own buffer when it is a single array nothing else holds,
/// else one copy of every array.
fn take<T: polars::prelude::PolarsNumericType>(
    ca: polars::prelude::ChunkedArray<T>,
) -> Vec<T::Native> {
    if ca.chunks().len() > 1 {
        let mut out = Vec::with_capacity(ca.len());
        for array in ca.downcast_iter() {
            out.extend_from_slice(array.values());
        }
        return out;
    }
    let mut out = Vec::new();
    for array in ca.downcast_into_iter() {
        let (_, values, _) = array.into_inner();
        out = values
            .into_mut()
            .either(|shared| shared.to_vec(), |own| own);
    }
    out
}

/// Writes bars as Parquet: `timestamp` a datetime column (ns, UTC), then `open`, `high`,
/// `low`, `close`, `volume` as Float64 — what [`load`](super::load) reads back exactly.
///
/// # Errors
///
/// [`DataError::Io`] or [`DataError::Parse`] (polars' writer error) naming the file.
pub fn write_parquet(bars: &Bars, path: &Path) -> Result<(), DataError> {
    write_parquet_with(bars, path, ParquetCompression::default(), None)
}

/// [`write_parquet`] with a chosen codec (polars' default, [`write_parquet`]'s, is zstd) and
/// rows per row group (`None`: polars' default of 512² = 262,144 rows; pyarrow's default is
/// 1,048,576 rows, Spark's 128 MB).
///
/// # Errors
///
/// As [`write_parquet`].
pub fn write_parquet_with(
    bars: &Bars,
    path: &Path,
    compression: ParquetCompression,
    row_group_rows: Option<usize>,
) -> Result<(), DataError> {
    use polars::prelude::{Column, NamedFrom, ParquetWriter};
    let polars_error = |source| DataError::Parse {
        path: path.to_owned(),
        format: FileFormat::Parquet,
        source,
    };
    let ts = Series::new("timestamp".into(), &bars.ts_ns)
        .cast(&DataType::Datetime(
            polars::prelude::TimeUnit::Nanoseconds,
            None,
        ))
        .map_err(polars_error)?;
    let columns = vec![
        Column::from(ts),
        Column::from(Series::new("open".into(), &bars.open)),
        Column::from(Series::new("high".into(), &bars.high)),
        Column::from(Series::new("low".into(), &bars.low)),
        Column::from(Series::new("close".into(), &bars.close)),
        Column::from(Series::new("volume".into(), &bars.volume)),
    ];
    let mut frame = DataFrame::new(bars.len(), columns).map_err(polars_error)?;
    let file = File::create(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    ParquetWriter::new(file)
        .with_compression(compression)
        .with_row_group_size(row_group_rows)
        .finish(&mut frame)
        .map_err(polars_error)?;
    Ok(())
}
