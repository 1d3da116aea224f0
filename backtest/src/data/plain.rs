//! Parquet columns read straight from their pages into the bars' columns.
//!
//! polars' reader decompresses each page into a buffer of its own, copies the values into an
//! array per row group and column, and the loader then copies a file of several row groups
//! once more into one `Vec` per column (48 MB at 1M bars). In the files polars' own writer
//! produces for these columns every page is PLAIN-encoded: after decompression, the values are
//! the little-endian bytes of the column. This path decompresses each page with
//! polars-parquet's own codecs into one reused buffer and appends its values to the column's
//! final `Vec`, one column per thread (the `Vec`s allocated on the calling thread: on glibc,
//! allocating them in the decoding threads, fresh or polars' own pool, made the load 3–8 ms
//! slower).
//!
//! Anything else (a dictionary page, another encoding, a null, nested or repeated columns, a
//! page that does not decode) returns `None`, and the loader reads the file with polars'
//! reader instead, which also names any error.

use std::fs::File;
use std::io::Cursor;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use polars::prelude::{ArrowSchema, DataType, TimeUnit};
use polars_buffer::Buffer;
use polars_parquet::parquet::compression::{Compression, DecompressionContext};
use polars_parquet::parquet::encoding::Encoding;
use polars_parquet::parquet::encoding::hybrid_rle::{HybridRleChunk, HybridRleDecoder};
use polars_parquet::parquet::metadata::{ColumnChunkMetadata, FileMetadata};
use polars_parquet::parquet::page::{CompressedPage, DataPageHeader, Page, split_buffer};
use polars_parquet::parquet::read::{PageReader, decompress};
use polars_parquet::parquet::schema::types::PhysicalType;
use polars_utils::mmap::MMapSemaphore;

use super::check::{
    RowScan, all_ordered, all_positive, all_volumes, first_predecessor, first_step, scan_timestamps,
};
use super::{Bars, ColumnNames};

/// Which of the row checks' rules a column's own values must meet.
#[derive(Clone, Copy)]
enum Rule {
    /// Strictly increasing, and whether evenly spaced.
    Timestamps,
    /// Positive and finite.
    Price,
    /// Finite and ≥ 0.
    Volume,
}

/// A column type stored as 8 little-endian bytes a value in PLAIN encoding.
trait Plain: Copy + Send {
    /// The Parquet physical type that stores it.
    const PHYSICAL: PhysicalType;
    fn from_le(bytes: [u8; 8]) -> Self;
    /// `rule` on `column[from..]`, `column[..from]` checked already; `None` while the rule
    /// cannot tell yet (the timestamps' first interval needs two values) and more values may
    /// come (`last` is false).
    fn check(rule: Rule, column: &[Self], from: usize, last: bool) -> Option<RowScan>;
}

impl Plain for i64 {
    const PHYSICAL: PhysicalType = PhysicalType::Int64;
    fn from_le(bytes: [u8; 8]) -> Self {
        i64::from_le_bytes(bytes)
    }
    fn check(_: Rule, ts: &[i64], from: usize, last: bool) -> Option<RowScan> {
        if ts.len() < 2 && !last {
            return None;
        }
        let step = first_step(ts);
        let previous = match from {
            0 => first_predecessor(ts, step),
            _ => ts[from - 1],
        };
        Some(scan_timestamps(&ts[from..], previous, step))
    }
}

impl Plain for f64 {
    const PHYSICAL: PhysicalType = PhysicalType::Double;
    fn from_le(bytes: [u8; 8]) -> Self {
        f64::from_le_bytes(bytes)
    }
    fn check(rule: Rule, column: &[f64], from: usize, _: bool) -> Option<RowScan> {
        let values = &column[from..];
        let valid = match rule {
            Rule::Volume => all_volumes(values),
            Rule::Price | Rule::Timestamps => all_positive(values),
        };
        Some(RowScan { valid, even: true })
    }
}

/// One column of the file: its chunk in every row group, in order, and the `Vec` its values
/// go to (allocated by the calling thread: see [`read_plain`]).
struct ColumnJob<'a, T> {
    chunks: Vec<&'a ColumnChunkMetadata>,
    rows: Vec<usize>,
    out: Vec<T>,
    done: bool,
    /// The column's own rules, checked on each page's values while they are in cache.
    rule: Rule,
    /// Values of `out` checked so far, and what the checks found.
    checked: usize,
    found: RowScan,
}

impl<'a, T: Plain> ColumnJob<'a, T> {
    fn new(chunks: Vec<&'a ColumnChunkMetadata>, rows: Vec<usize>, rule: Rule) -> Self {
        let n = rows.iter().sum();
        ColumnJob {
            chunks,
            rows,
            out: Vec::with_capacity(n),
            done: false,
            rule,
            checked: 0,
            found: RowScan::CLEAN,
        }
    }

    /// The column's rule on the values appended since the last call; `last` once every value
    /// is in.
    fn check_new(&mut self, last: bool) {
        if let Some(found) = T::check(self.rule, &self.out, self.checked, last) {
            self.found = self.found.and(found);
            self.checked = self.out.len();
        }
    }
}

/// What one worker thread keeps between pages: the decompression buffer and zstd context.
struct Scratch {
    buffer: Vec<u8>,
    context: DecompressionContext,
}

/// Bytes a PLAIN page of `n` values of 8 bytes may hold besides them: the 4-byte length and
/// the run of its definition levels (a few bytes).
const LEVEL_BYTES: usize = 64;

impl<T: Plain> ColumnJob<'_, T> {
    /// Appends every value of the column to `out`; `false` when a page is not what this path
    /// reads (the caller falls back to polars' reader).
    fn run(&mut self, file: &Buffer<u8>, scratch: &mut Scratch) -> bool {
        for k in 0..self.chunks.len() {
            let end = self.out.len() + self.rows[k];
            if !self.append_chunk(k, end, file, scratch) || self.out.len() != end {
                return false;
            }
        }
        if self.checked < self.out.len() {
            // Fewer than two values: checked as the row checks do (see `scan_rows`).
            self.check_new(true);
        }
        self.done = true;
        true
    }

    /// Chunk `k`'s pages, decompressed one at a time into `scratch` and appended to `out`, which
    /// must not grow past `end` values (a page header claiming more is rejected before anything
    /// is allocated for it); each page's values are checked while in cache.
    fn append_chunk(
        &mut self,
        k: usize,
        end: usize,
        file: &Buffer<u8>,
        scratch: &mut Scratch,
    ) -> bool {
        let chunk = self.chunks[k];
        let range = chunk.byte_range();
        let (Ok(start), Ok(stop)) = (usize::try_from(range.start), usize::try_from(range.end))
        else {
            return false;
        };
        if start > stop || stop > file.len() {
            return false;
        }
        let bytes = file.clone().sliced(start..stop);
        let pages = PageReader::new(Cursor::new(bytes), chunk, Vec::new(), usize::MAX);
        for page in pages {
            let page = match page {
                Ok(CompressedPage::Data(page)) => page,
                // A dictionary page, or a page header that does not parse.
                _ => return false,
            };
            let n = page.num_values();
            if n > end - self.out.len() || page.uncompressed_size() > n * 8 + LEVEL_BYTES {
                return false;
            }
            let compressed = page.compression() != Compression::Uncompressed;
            let mut page = match decompress(
                CompressedPage::Data(page),
                &mut scratch.buffer,
                &mut scratch.context,
            ) {
                Ok(Page::Data(page)) => page,
                _ => return false,
            };
            let appended = append_page(&page, &mut self.out);
            if compressed {
                // Take the decompression buffer back for the next page.
                scratch.buffer = std::mem::take(page.buffer_mut());
            }
            if !appended {
                return false;
            }
            self.check_new(false);
        }
        true
    }
}

/// A decompressed data page's values appended to `out`: PLAIN, no repetition levels, and
/// definition levels (if the column is optional) saying every value is present.
fn append_page<T: Plain>(page: &polars_parquet::parquet::page::DataPage, out: &mut Vec<T>) -> bool {
    let descriptor = &page.descriptor;
    if page.encoding() != Encoding::Plain
        || descriptor.max_rep_level != 0
        || descriptor.max_def_level > 1
    {
        return false;
    }
    if let DataPageHeader::V1(_) = page.header() {
        if descriptor.max_def_level == 1 && page.definition_level_encoding() != Encoding::Rle {
            return false;
        }
    }
    if let DataPageHeader::V2(header) = page.header() {
        // `split_buffer` slices a V2 page at its header's level lengths unchecked.
        let levels = i64::from(header.definition_levels_byte_length)
            + i64::from(header.repetition_levels_byte_length);
        if !(0..=page.buffer().len() as i64).contains(&levels)
            || header.definition_levels_byte_length < 0
            || header.repetition_levels_byte_length < 0
        {
            return false;
        }
    }
    let Ok(split) = split_buffer(page) else {
        return false;
    };
    let n = page.num_values();
    if descriptor.max_def_level == 1 && !all_defined(split.def, n) {
        return false;
    }
    // With every value present, a PLAIN page holds exactly `n` values of 8 bytes.
    if split.values.len() != n.saturating_mul(8) {
        return false;
    }
    out.extend(split.values.chunks_exact(8).map(|b| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(b);
        T::from_le(bytes)
    }));
    true
}

/// Whether `n` RLE/bit-packed hybrid definition levels of width 1 are all 1 (no nulls).
/// Writers encode a column without nulls as one run of ones; bit-packed runs are not read
/// here (the caller falls back).
fn all_defined(levels: &[u8], n: usize) -> bool {
    let mut decoder = HybridRleDecoder::new(levels, 1, n);
    let mut seen = 0usize;
    loop {
        match decoder.next_chunk() {
            Ok(Some(HybridRleChunk::Rle(1, len))) => seen += len,
            Ok(None) => return seen == n,
            _ => return false,
        }
    }
}

/// The six columns of a Parquet file read page by page (see the module docs), with the row
/// checks' findings; `None` when the file's layout is not one this path reads.
pub(super) fn read_plain(
    file: &File,
    metadata: &FileMetadata,
    schema: &ArrowSchema,
    names: &ColumnNames,
) -> Option<(Bars, RowScan)> {
    if cfg!(target_endian = "big") {
        // `from_le` is exact on any host, but this path is only measured on little-endian.
        return None;
    }
    let dtype = |name: &str| schema.get(name).map(DataType::from_arrow_field);
    if !matches!(
        dtype(&names.timestamp)?,
        DataType::Datetime(TimeUnit::Nanoseconds, _)
    ) || names
        .prices()
        .iter()
        .any(|n| dtype(n) != Some(DataType::Float64))
    {
        return None;
    }
    let n = metadata.num_rows;
    let rows: Vec<usize> = metadata.row_groups.iter().map(|rg| rg.num_rows()).collect();
    if rows.iter().sum::<usize>() != n {
        return None;
    }
    let chunks = |name: &str, physical: PhysicalType| -> Option<Vec<&ColumnChunkMetadata>> {
        metadata
            .row_groups
            .iter()
            .map(|rg| {
                let mut leaves = rg.columns_under_root_iter(name)?;
                let chunk = leaves.next()?;
                (leaves.next().is_none()
                    && chunk.physical_type() == physical
                    && chunk.descriptor().path_in_schema.len() == 1)
                    .then_some(chunk)
            })
            .collect()
    };
    // Every column's `Vec` is allocated here, on the calling thread: glibc serves a worker
    // thread from an arena of its own, whose fresh pages would be faulted in on every load.
    let ts = ColumnJob::<i64>::new(
        chunks(&names.timestamp, i64::PHYSICAL)?,
        rows.clone(),
        Rule::Timestamps,
    );
    let mut prices = Vec::with_capacity(5);
    for (k, name) in names.prices().into_iter().enumerate() {
        let rule = if k == 4 { Rule::Volume } else { Rule::Price };
        prices.push(ColumnJob::<f64>::new(
            chunks(name, f64::PHYSICAL)?,
            rows.clone(),
            rule,
        ));
    }
    let mmap = MMapSemaphore::new_from_file(file).ok()?;
    let bytes = Buffer::from_owner(mmap);

    // The six columns are independent: each thread takes the next column not yet taken.
    let ts = Mutex::new(ts);
    let prices: Vec<Mutex<ColumnJob<f64>>> = prices.into_iter().map(Mutex::new).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        let mut scratch = Scratch {
            buffer: Vec::new(),
            context: DecompressionContext::Unset,
        };
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let ok = match i {
                0 => ts.lock().is_ok_and(|mut job| job.run(&bytes, &mut scratch)),
                i if i <= prices.len() => prices[i - 1]
                    .lock()
                    .is_ok_and(|mut job| job.run(&bytes, &mut scratch)),
                _ => break,
            };
            if !ok {
                // Stop the other threads early too: the file goes to polars' reader.
                next.store(usize::MAX / 2, Ordering::Relaxed);
                break;
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(6));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            // A thread that cannot be spawned leaves its columns to the others.
            let _ = std::thread::Builder::new().spawn_scoped(scope, work);
        }
        work();
    });

    let ts = ts.into_inner().ok()?;
    let mut found = ts.found;
    let mut columns = Vec::with_capacity(5);
    for job in prices {
        let job = job.into_inner().ok()?;
        if !job.done {
            return None;
        }
        found = found.and(job.found);
        columns.push(job.out);
    }
    if !ts.done {
        return None;
    }
    let [open, high, low, close, volume]: [Vec<f64>; 5] = columns.try_into().ok()?;
    let bars = Bars {
        ts_ns: ts.out,
        open,
        high,
        low,
        close,
        volume,
    };
    // The rules across columns, on the two cores; only meaningful (and only needed) when every
    // price is positive.
    if found.valid {
        found.valid = all_ordered(&bars, threads);
    }
    Some((bars, found))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use polars::prelude::{
        Column, DataFrame, NamedFrom, ParquetCompression, ParquetReader, ParquetWriter, SerReader,
        Series,
    };

    use super::*;
    use crate::data::check::scan_rows;
    use crate::data::{LoadOptions, frame_bars, load, write_parquet_with};

    /// Bit for bit the same bars (NaN included).
    fn same_bits(a: &Bars, b: &Bars) -> bool {
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let columns = |x: &Bars| {
            [
                bits(&x.open),
                bits(&x.high),
                bits(&x.low),
                bits(&x.close),
                bits(&x.volume),
            ]
        };
        a.ts_ns == b.ts_ns && columns(a) == columns(b)
    }

    /// [`read_plain`] on a file, as `load` calls it.
    fn read(path: &Path) -> Option<(Bars, RowScan)> {
        let file = File::open(path).unwrap();
        let mut reader = ParquetReader::new(file.try_clone().unwrap());
        let schema = reader.schema().unwrap();
        let metadata = reader.get_metadata().unwrap().clone();
        read_plain(&file, &metadata, &schema, &ColumnNames::default())
    }

    /// The bars polars' reader gives for the same file (the loader's other path), with the
    /// row checks' findings when that path makes them (several row groups).
    fn through_polars(path: &Path) -> (Bars, Option<RowScan>) {
        let frame = ParquetReader::new(File::open(path).unwrap())
            .finish()
            .unwrap();
        let parse = |source| super::super::DataError::Parse {
            path: path.to_owned(),
            format: super::super::FileFormat::Parquet,
            source,
        };
        let (bars, _, scanned) = frame_bars(frame, &LoadOptions::default(), None, &parse).unwrap();
        (bars, scanned)
    }

    /// Every codec and row-group layout polars' writer produces is read from its pages, bit
    /// for bit what polars' own reader gives, with the row checks' findings of the plain scan.
    #[test]
    fn polars_files_are_read_from_their_pages() {
        let bars = gauntlet_fixtures::generate_ohlcv_every(9, 70_000, 60).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (i, (codec, groups)) in [
            (ParquetCompression::default(), None),
            (ParquetCompression::default(), Some(16_000)),
            (ParquetCompression::Snappy, Some(70_000)),
            (ParquetCompression::Snappy, Some(9_999)),
            (ParquetCompression::Uncompressed, Some(30_000)),
            (ParquetCompression::Lz4Raw, Some(30_000)),
        ]
        .into_iter()
        .enumerate()
        {
            let path = dir.path().join(format!("layout-{i}.parquet"));
            write_parquet_with(&bars, &path, codec, groups).unwrap();
            let (got, scan) = read(&path).unwrap_or_else(|| panic!("layout {i} not read"));
            assert!(got == bars, "layout {i}: {codec:?}, {groups:?}");
            let (polars, scanned) = through_polars(&path);
            assert!(got == polars, "layout {i}");
            assert_eq!(scan, scan_rows(&bars));
            assert_eq!(scan, RowScan::CLEAN);
            assert_eq!(scanned.unwrap_or(scan), scan, "layout {i}");
        }
        // A broken row is read as it is; the scan finds it and `load` names it.
        let mut bad = bars;
        bad.low[40_000] = bad.high[40_000] * 2.0;
        let path = dir.path().join("bad.parquet");
        write_parquet_with(&bad, &path, ParquetCompression::default(), Some(16_000)).unwrap();
        let (got, scan) = read(&path).unwrap();
        assert!(got == bad);
        assert!(!scan.valid);
        let (polars, scanned) = through_polars(&path);
        assert!(polars == bad);
        assert_eq!(scanned, Some(scan));
        let err = load(&path, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 40001, column \"low\""), "{err}");
    }

    /// The column rules checked page by page and the rules across columns find what the
    /// one-pass row checks find, for a break in every rule, at page and row-group seams, and
    /// for gaps (valid bars, not evenly spaced), and for files of one or two bars.
    #[test]
    fn page_checks_find_what_the_row_checks_find() {
        type Break = fn(&mut Bars);
        let breaks: [Break; 12] = [
            |_| {},
            |b| b.high[500] = b.open[500].max(b.close[500]) * 0.99,
            |b| b.low[16_000] = b.open[16_000].min(b.close[16_000]) * 1.01,
            |b| b.close[15_999] = f64::NAN,
            |b| b.open[0] = -1.0,
            |b| b.high[39_999] = f64::INFINITY,
            |b| b.volume[20_000] = -0.5,
            |b| b.volume[7] = f64::NAN,
            |b| b.ts_ns[16_000] = b.ts_ns[15_999],
            |b| b.ts_ns[1] = b.ts_ns[0] - 1,
            |b| b.ts_ns[39_999] += 1,
            |b| {
                for t in &mut b.ts_ns[30_000..] {
                    *t += 3_600_000_000_000;
                }
            },
        ];
        let bars = gauntlet_fixtures::generate_ohlcv_every(6, 40_000, 60).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (i, broken) in breaks.into_iter().enumerate() {
            let mut bad = bars.clone();
            broken(&mut bad);
            let path = dir.path().join(format!("break-{i}.parquet"));
            write_parquet_with(&bad, &path, ParquetCompression::default(), Some(16_000)).unwrap();
            let (got, scan) = read(&path).unwrap();
            assert!(same_bits(&got, &bad), "break {i}");
            let expected = scan_rows(&bad);
            assert_eq!(scan.valid, expected.valid, "break {i}");
            if expected.valid {
                assert_eq!(scan.even, expected.even, "break {i}");
            }
        }
        // Files this short are dictionary-encoded by polars' writer (and too short to load):
        // the timestamps' rule on one or two values, against the row checks.
        for n in [1, 2] {
            let short = gauntlet_fixtures::generate_ohlcv(1, 100).unwrap();
            let short = Bars {
                ts_ns: short.ts_ns[..n].to_vec(),
                open: short.open[..n].to_vec(),
                high: short.high[..n].to_vec(),
                low: short.low[..n].to_vec(),
                close: short.close[..n].to_vec(),
                volume: short.volume[..n].to_vec(),
            };
            assert_eq!(
                <i64 as Plain>::check(Rule::Timestamps, &short.ts_ns, 0, true),
                Some(scan_rows(&short)),
                "{n} bars"
            );
            assert_eq!(
                <i64 as Plain>::check(Rule::Timestamps, &short.ts_ns[..1], 0, false),
                None
            );
        }
    }

    /// Nulls and other column types are left to polars' reader, which `load` then uses: the
    /// same bars, the same named errors. (Beyond 128 rows polars' writer does not
    /// dictionary-encode these columns: floats are always PLAIN, and strictly increasing
    /// timestamps are all distinct.)
    #[test]
    fn other_layouts_go_to_polars_reader() {
        let dir = tempfile::tempdir().unwrap();
        // A null volume.
        let bars = gauntlet_fixtures::generate_ohlcv(2, 1_000).unwrap();
        let ts = Series::new("timestamp".into(), &bars.ts_ns)
            .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
            .unwrap();
        let mut volume: Vec<Option<f64>> = bars.volume.iter().copied().map(Some).collect();
        volume[700] = None;
        let write = |path: &Path, volume: Series| {
            let columns = vec![
                Column::from(ts.clone()),
                Column::from(Series::new("open".into(), &bars.open)),
                Column::from(Series::new("high".into(), &bars.high)),
                Column::from(Series::new("low".into(), &bars.low)),
                Column::from(Series::new("close".into(), &bars.close)),
                Column::from(volume),
            ];
            let mut frame = DataFrame::new(bars.len(), columns).unwrap();
            ParquetWriter::new(File::create(path).unwrap())
                .finish(&mut frame)
                .unwrap();
        };
        let path = dir.path().join("null.parquet");
        write(&path, Series::new("volume".into(), &volume));
        assert!(read(&path).is_none());
        let err = load(&path, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert_eq!(err, "row 701, column \"volume\": value is missing");

        // Volumes as integers: converted by polars' path.
        let path = dir.path().join("int-volume.parquet");
        let ints: Vec<i64> = bars.volume.iter().map(|v| v.round() as i64).collect();
        write(&path, Series::new("volume".into(), &ints));
        assert!(read(&path).is_none());
        let loaded = load(&path, &LoadOptions::default()).unwrap();
        assert!(
            loaded
                .bars
                .volume
                .iter()
                .zip(&ints)
                .all(|(a, b)| *a == *b as f64)
        );
    }

    /// A file cut short or with a corrupted page is not read from its pages; polars' reader
    /// then reports the error (no panic, no partial bars).
    #[test]
    fn damaged_files_are_errors_not_panics() {
        let bars = gauntlet_fixtures::generate_ohlcv_every(9, 50_000, 60).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bars.parquet");
        write_parquet_with(&bars, &path, ParquetCompression::default(), Some(20_000)).unwrap();
        let good = std::fs::read(&path).unwrap();
        // Overwrite bytes inside the first column chunk's pages (after the magic bytes), at
        // several offsets: page headers and compressed data.
        for offset in [4, 40, 5_000, 100_000] {
            let mut damaged = good.clone();
            for b in &mut damaged[offset..offset + 16] {
                *b ^= 0x5a;
            }
            let path = dir.path().join(format!("damaged-{offset}.parquet"));
            std::fs::write(&path, &damaged).unwrap();
            let file = File::open(&path).unwrap();
            let mut reader = ParquetReader::new(file.try_clone().unwrap());
            let schema = reader.schema().unwrap();
            let metadata = reader.get_metadata().unwrap().clone();
            if let Some((got, _)) = read_plain(&file, &metadata, &schema, &ColumnNames::default()) {
                // Damage that still decodes (PLAIN bytes of the values) changes values only.
                assert_eq!(got.len(), bars.len());
            }
            // `load` reads bars, names the file polars cannot parse, or names the row and
            // column of a damaged value.
            if let Err(e) = load(&path, &LoadOptions::default()) {
                let e = e.to_string();
                assert!(e.contains("damaged") || e.contains(", column \""), "{e}");
            }
        }
        // Cut short: the footer is gone, polars' reader names the file.
        let path = dir.path().join("cut.parquet");
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        let err = load(&path, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("failed to parse") && err.contains("cut.parquet"),
            "{err}"
        );
    }
}
