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
use polars_parquet::parquet::page::{CompressedPage, DataPage, DataPageHeader, Page, split_buffer};
use polars_parquet::parquet::read::{PageReader, decompress};
use polars_parquet::parquet::schema::types::PhysicalType;
use polars_utils::mmap::MMapSemaphore;

use super::check::{
    RowScan, all_ordered, all_positive, all_volumes, first_predecessor, first_step, scan_timestamps,
};
use super::{Bars, ColumnNames};

/// Which of the row checks' rules a price column's own values must meet.
#[derive(Clone, Copy)]
enum Rule {
    /// Positive and finite.
    Price,
    /// Finite and ≥ 0.
    Volume,
}

impl Rule {
    fn check(self, values: &[f64]) -> bool {
        match self {
            Rule::Price => all_positive(values),
            Rule::Volume => all_volumes(values),
        }
    }
}

/// A column type stored as 8 little-endian bytes a value in PLAIN encoding.
trait Plain: bytemuck::Pod + Send {
    /// The Parquet physical type that stores it.
    const PHYSICAL: PhysicalType;
    fn from_le(bytes: [u8; 8]) -> Self;
    /// The column's own rules on `column[from..]`, `column[..from]` checked already; `None`
    /// while they cannot tell yet (the timestamps' first interval needs two values) and more
    /// values may come (`last` is false).
    fn check(column: &[Self], from: usize, last: bool) -> Option<RowScan>;
}

impl Plain for i64 {
    const PHYSICAL: PhysicalType = PhysicalType::Int64;
    fn from_le(bytes: [u8; 8]) -> Self {
        i64::from_le_bytes(bytes)
    }
    fn check(ts: &[i64], from: usize, last: bool) -> Option<RowScan> {
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
    fn check(close: &[f64], from: usize, _: bool) -> Option<RowScan> {
        Some(RowScan {
            valid: all_positive(&close[from..]),
            even: true,
        })
    }
}

/// A whole column decoded by one thread, its values appended to a `Vec` (allocated by the
/// calling thread: see [`jobs`]): the timestamps (whose checks run in order) and the close
/// prices (which a consumer reads as one slice).
struct ColumnJob<'a, T> {
    chunks: Vec<&'a ColumnChunkMetadata>,
    rows: Vec<usize>,
    out: Vec<T>,
    done: bool,
    /// Values of `out` checked so far, and what the checks found.
    checked: usize,
    found: RowScan,
}

impl<'a, T: Plain> ColumnJob<'a, T> {
    fn new(chunks: Vec<&'a ColumnChunkMetadata>, rows: Vec<usize>) -> Self {
        let n = rows.iter().sum();
        ColumnJob {
            chunks,
            rows,
            out: Vec::with_capacity(n),
            done: false,
            checked: 0,
            found: RowScan::CLEAN,
        }
    }

    /// The column's rules on the values appended since the last call; `last` once every
    /// value is in.
    fn check_new(&mut self, last: bool) {
        if let Some(found) = T::check(&self.out, self.checked, last) {
            self.found = self.found.and(found);
            self.checked = self.out.len();
        }
    }

    /// Appends every value of the column to `out`; `false` when a page is not what this path
    /// reads (the caller falls back to polars' reader).
    fn run(&mut self, file: &Buffer<u8>, scratch: &mut Scratch) -> bool {
        for k in 0..self.chunks.len() {
            let end = self.out.len() + self.rows[k];
            let chunk = self.chunks[k];
            let room = end - self.out.len();
            let read = each_page(chunk, file, scratch, room, |values| {
                append(&mut self.out, values);
                // Checked while in cache.
                self.check_new(false);
                true
            });
            if !read || self.out.len() != end {
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
}

/// One row group of a price column other than the close. Its pages are decompressed without
/// a lock, then copied into the column under the column's lock: row groups of one column
/// may be decoded by different threads at once, and the tail of the file is shared.
struct ChunkJob<'a> {
    chunk: &'a ColumnChunkMetadata,
    column: &'a Mutex<Vec<f64>>,
    /// The row group's first row in the column, and its rows.
    start: usize,
    rows: usize,
    rule: Rule,
    done: bool,
    /// Whether every value so far meets `rule`.
    valid: bool,
}

impl ChunkJob<'_> {
    /// Writes the chunk's values into its rows of the column; `false` when a page is not
    /// what this path reads or the chunk holds another number of values.
    fn run(&mut self, file: &Buffer<u8>, scratch: &mut Scratch) -> bool {
        let mut filled = 0;
        let (column, start, rule, valid) = (self.column, self.start, self.rule, &mut self.valid);
        let read = each_page(self.chunk, file, scratch, self.rows, |values| {
            let Ok(mut column) = column.lock() else {
                return false;
            };
            let at = start + filled;
            put(&mut column, at, values);
            let n = values.len() / 8;
            *valid &= rule.check(&column[at..at + n]);
            filled += n;
            true
        });
        self.done = read && filled == self.rows;
        self.done
    }
}

/// `values` (8 little-endian bytes each) written into `column` from row `at`: appended
/// where the column ends there (row groups mostly finish in order, and nothing is written
/// twice), over the zeros a later row group left when it finished first, and after zeros
/// up to `at` when this one is first.
fn put(column: &mut Vec<f64>, at: usize, values: &[u8]) {
    if column.len() < at {
        column.resize(at, 0.0);
    }
    let over = (column.len() - at).min(values.len() / 8);
    let (inside, beyond) = values.split_at(over * 8);
    // Byte for byte: the column's `f64`s on this little-endian host.
    bytemuck::cast_slice_mut::<f64, u8>(&mut column[at..at + over]).copy_from_slice(inside);
    append(column, beyond);
}

/// `values` (8 little-endian bytes each) appended to `out`.
fn append<T: Plain>(out: &mut Vec<T>, values: &[u8]) {
    match bytemuck::try_cast_slice::<u8, T>(values) {
        // Aligned for `T` on this little-endian host (`read_plain` checks the byte order):
        // one memcpy, several times faster here than value by value.
        Ok(values) => out.extend_from_slice(values),
        Err(_) => out.extend(values.chunks_exact(8).map(|b| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            T::from_le(bytes)
        })),
    }
}

/// What one worker thread keeps between pages: the decompression buffer and zstd context.
struct Scratch {
    buffer: Vec<u8>,
    context: DecompressionContext,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            buffer: Vec::new(),
            context: DecompressionContext::Unset,
        }
    }
}

/// Bytes a PLAIN page of `n` values of 8 bytes may hold besides them: the 4-byte length and
/// the run of its definition levels (a few bytes).
const LEVEL_BYTES: usize = 64;

/// `chunk`'s pages, decompressed one at a time into `scratch`, their values (8 little-endian
/// bytes each) handed to `take` in order; `false` when a page is not what this path reads or
/// `take` refuses it. Pages claiming more than `room` values in all are refused before
/// anything is allocated for them.
fn each_page(
    chunk: &ColumnChunkMetadata,
    file: &Buffer<u8>,
    scratch: &mut Scratch,
    mut room: usize,
    mut take: impl FnMut(&[u8]) -> bool,
) -> bool {
    let range = chunk.byte_range();
    let (Ok(start), Ok(stop)) = (usize::try_from(range.start), usize::try_from(range.end)) else {
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
        if n > room || page.uncompressed_size() > n * 8 + LEVEL_BYTES {
            return false;
        }
        room -= n;
        let compressed = page.compression() != Compression::Uncompressed;
        let mut page = match decompress(
            CompressedPage::Data(page),
            &mut scratch.buffer,
            &mut scratch.context,
        ) {
            Ok(Page::Data(page)) => page,
            _ => return false,
        };
        let read = page_values(&page).is_some_and(&mut take);
        if compressed {
            // Take the decompression buffer back for the next page.
            scratch.buffer = std::mem::take(page.buffer_mut());
        }
        if !read {
            return false;
        }
    }
    true
}

/// A decompressed data page's values, `num_values()` times 8 bytes: PLAIN, no repetition
/// levels, and definition levels (if the column is optional) saying every value is present.
fn page_values(page: &DataPage) -> Option<&[u8]> {
    let descriptor = &page.descriptor;
    if page.encoding() != Encoding::Plain
        || descriptor.max_rep_level != 0
        || descriptor.max_def_level > 1
    {
        return None;
    }
    if let DataPageHeader::V1(_) = page.header()
        && descriptor.max_def_level == 1
        && page.definition_level_encoding() != Encoding::Rle
    {
        return None;
    }
    if let DataPageHeader::V2(header) = page.header() {
        // `split_buffer` slices a V2 page at its header's level lengths unchecked.
        let levels = i64::from(header.definition_levels_byte_length)
            + i64::from(header.repetition_levels_byte_length);
        if !(0..=page.buffer().len() as i64).contains(&levels)
            || header.definition_levels_byte_length < 0
            || header.repetition_levels_byte_length < 0
        {
            return None;
        }
    }
    let split = split_buffer(page).ok()?;
    let n = page.num_values();
    if descriptor.max_def_level == 1 && !all_defined(split.def, n) {
        return None;
    }
    // With every value present, a PLAIN page holds exactly `n` values of 8 bytes.
    (split.values.len() == n.saturating_mul(8)).then_some(split.values)
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

/// A consumer of the close prices: not run yet, or its result.
pub(super) enum Consumer<F, R> {
    /// Not run yet.
    Pending(F),
    /// Its result.
    Done(R),
}

impl<F: FnOnce(&[f64]) -> R, R> Consumer<F, R> {
    /// The result: a pending consumer run on `close` now.
    pub(super) fn result(self, close: &[f64]) -> R {
        match self {
            Consumer::Pending(consume) => consume(close),
            Consumer::Done(result) => result,
        }
    }
}

/// The most rows any part of a Parquet file's metadata claims for the bars: its own count,
/// its row groups' counts summed, and each of the six columns' value counts in each row
/// group. A reader sizes its buffers by these, so each is checked against the limit before
/// anything is read.
pub(super) fn claimed_rows(metadata: &FileMetadata, names: &ColumnNames) -> usize {
    let row_groups = metadata
        .row_groups
        .iter()
        .fold(0usize, |sum, rg| sum.saturating_add(rg.num_rows()));
    let values = metadata
        .row_groups
        .iter()
        .flat_map(|rg| {
            names
                .all()
                .into_iter()
                .filter_map(|name| rg.columns_under_root_iter(name))
                .flatten()
        })
        .map(|chunk| usize::try_from(chunk.num_values()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    metadata.num_rows.max(row_groups).max(values)
}

/// The columns of one file to decode, as [`read_plain`] found them.
struct Jobs<'a> {
    ts: ColumnJob<'a, i64>,
    close: ColumnJob<'a, f64>,
    /// Open, high, low and volume: each column's chunks, in order.
    others: [Vec<&'a ColumnChunkMetadata>; 4],
    rows: Vec<usize>,
}

/// The six columns of a Parquet file read page by page (see the module docs), with the row
/// checks' findings; `None` when the file's layout is not one this path reads.
///
/// The calling thread decodes the close prices first and, once every one of them is in and
/// positive and finite, runs a pending `consume`r on them while the other threads decode
/// the timestamps and the other price columns, a row group at a time, which the calling
/// thread then joins. The consumer's result comes back as [`Consumer::Done`] (also when the
/// file then goes to polars' reader: the close prices it saw are the file's), for the caller
/// to use only once the rest of the rows pass their checks.
pub(super) fn read_plain<F: FnOnce(&[f64]) -> R, R>(
    file: &File,
    metadata: &FileMetadata,
    schema: &ArrowSchema,
    names: &ColumnNames,
    consume: Consumer<F, R>,
) -> (Option<(Bars, RowScan)>, Consumer<F, R>) {
    if cfg!(target_endian = "big") {
        // The values are copied byte for byte as little-endian.
        return (None, consume);
    }
    let Some(jobs) = jobs(metadata, schema, names) else {
        return (None, consume);
    };
    let Some(bytes) = MMapSemaphore::new_from_file(file)
        .ok()
        .map(Buffer::from_owner)
    else {
        return (None, consume);
    };
    decode(jobs, &bytes, consume)
}

/// The file's columns as jobs, when their types and chunks are what this path reads. The
/// `Vec`s of whole-column jobs are allocated here, on the calling thread: glibc serves a
/// worker thread from an arena of its own, whose fresh pages would be faulted in on every
/// load.
fn jobs<'a>(
    metadata: &'a FileMetadata,
    schema: &ArrowSchema,
    names: &ColumnNames,
) -> Option<Jobs<'a>> {
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
    let [open, high, low, close, volume] = names.prices();
    let price = |name: &str| chunks(name, f64::PHYSICAL);
    Some(Jobs {
        ts: ColumnJob::new(chunks(&names.timestamp, i64::PHYSICAL)?, rows.clone()),
        close: ColumnJob::new(price(close)?, rows.clone()),
        others: [price(open)?, price(high)?, price(low)?, price(volume)?],
        rows,
    })
}

/// A job of [`decode`]'s queue.
#[derive(Clone, Copy)]
enum Job {
    /// The close prices (whole).
    Close,
    /// The timestamps (whole).
    Timestamps,
    /// One row group of one of the other price columns.
    Chunk(usize),
}

/// Decodes the jobs (see [`read_plain`]).
fn decode<F: FnOnce(&[f64]) -> R, R>(
    jobs: Jobs<'_>,
    bytes: &Buffer<u8>,
    consume: Consumer<F, R>,
) -> (Option<(Bars, RowScan)>, Consumer<F, R>) {
    let Jobs {
        ts,
        close,
        others,
        rows,
    } = jobs;
    let n: usize = rows.iter().sum();
    // Allocated here, like the whole-column jobs' (see `jobs`), and filled by the row groups.
    let columns: [Mutex<Vec<f64>>; 4] = std::array::from_fn(|_| Mutex::new(Vec::with_capacity(n)));
    // Row by row group: the first row group of open, high, low and volume, then the second…
    // so that a column's row groups mostly finish in order and the last jobs are of
    // different columns.
    let mut chunk_jobs = Vec::with_capacity(4 * rows.len());
    let mut start = 0;
    for (g, &group_rows) in rows.iter().enumerate() {
        for (k, column) in columns.iter().enumerate() {
            chunk_jobs.push(Mutex::new(ChunkJob {
                chunk: others[k][g],
                column,
                start,
                rows: group_rows,
                rule: if k == 3 { Rule::Volume } else { Rule::Price },
                done: false,
                valid: true,
            }));
        }
        start += group_rows;
    }
    // The queue: the close prices (claimed by this thread before any other starts), the
    // timestamps, then the row groups of open, high, low, volume.
    let queue: Vec<Job> = [Job::Close, Job::Timestamps]
        .into_iter()
        .chain((0..chunk_jobs.len()).map(Job::Chunk))
        .collect();
    let ts = Mutex::new(ts);
    let close = Mutex::new(close);
    let next = AtomicUsize::new(0);
    let run = |job: Job, scratch: &mut Scratch| match job {
        Job::Close => close.lock().is_ok_and(|mut job| job.run(bytes, scratch)),
        Job::Timestamps => ts.lock().is_ok_and(|mut job| job.run(bytes, scratch)),
        Job::Chunk(k) => chunk_jobs[k]
            .lock()
            .is_ok_and(|mut job| job.run(bytes, scratch)),
    };
    // Stops the other threads early too: the file goes to polars' reader.
    let give_up = || next.store(usize::MAX / 2, Ordering::Relaxed);
    let work = |scratch: &mut Scratch| {
        while let Some(&job) = queue.get(next.fetch_add(1, Ordering::Relaxed)) {
            if !run(job, scratch) {
                give_up();
                break;
            }
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(6));
    let consume = std::thread::scope(|scope| {
        let mut scratch = Scratch::default();
        let first = queue.get(next.fetch_add(1, Ordering::Relaxed)).copied();
        for _ in 1..threads {
            // A thread that cannot be spawned leaves its jobs to the others.
            let _ =
                std::thread::Builder::new().spawn_scoped(scope, || work(&mut Scratch::default()));
        }
        let mut consume = consume;
        if let Some(first) = first {
            if !run(first, &mut scratch) {
                give_up();
            } else if let Ok(close) = close.lock() {
                // Every close price in, positive and finite: what the consumer may see.
                if close.found.valid {
                    consume = Consumer::Done(consume.result(&close.out));
                }
            }
        }
        work(&mut scratch);
        consume
    });
    let mut found = RowScan::CLEAN;
    for job in chunk_jobs {
        match job.into_inner() {
            Ok(job) if job.done => found.valid &= job.valid,
            _ => return (None, consume),
        }
    }
    let (Ok(ts), Ok(close)) = (ts.into_inner(), close.into_inner()) else {
        return (None, consume);
    };
    if !ts.done || !close.done {
        return (None, consume);
    }
    found = found.and(ts.found).and(close.found);
    let [Ok(open), Ok(high), Ok(low), Ok(volume)] = columns.map(Mutex::into_inner) else {
        return (None, consume);
    };
    if [&open, &high, &low, &volume].iter().any(|c| c.len() != n) {
        return (None, consume);
    }
    let bars = Bars {
        ts_ns: ts.out,
        open,
        high,
        low,
        close: close.out,
        volume,
    };
    // The rules across columns, on the two cores; only meaningful (and only needed) when every
    // price is positive.
    if found.valid {
        found.valid = all_ordered(&bars, threads);
    }
    (Some((bars, found)), consume)
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
        read_plain(
            &file,
            &metadata,
            &schema,
            &ColumnNames::default(),
            Consumer::Pending(|_: &[f64]| ()),
        )
        .0
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

    /// `load_then` hands the consumer the file's close prices and returns its result with the
    /// bars: from the pages while the other columns decode (Parquet of one or several row
    /// groups), after polars' reader (a null volume), after the checks (CSV).
    #[test]
    fn load_then_consumes_the_close_prices_of_every_kind_of_file() {
        let dir = tempfile::tempdir().unwrap();
        let bars = gauntlet_fixtures::generate_ohlcv_every(3, 30_000, 60).unwrap();
        let bits = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let mut files = Vec::new();
        for (k, rows) in [None, Some(7_000), Some(30_000)].into_iter().enumerate() {
            let path = dir.path().join(format!("bars-{k}.parquet"));
            write_parquet_with(&bars, &path, ParquetCompression::default(), rows).unwrap();
            files.push(path);
        }
        let csv = dir.path().join("bars.csv");
        bars.write_csv(std::io::BufWriter::new(File::create(&csv).unwrap()))
            .unwrap();
        files.push(csv);
        let mut with_null = DataFrame::new(
            bars.len(),
            vec![
                Column::from(
                    Series::new("timestamp".into(), &bars.ts_ns)
                        .cast(&DataType::Datetime(TimeUnit::Nanoseconds, None))
                        .unwrap(),
                ),
                Column::from(Series::new("open".into(), &bars.open)),
                Column::from(Series::new("high".into(), &bars.high)),
                Column::from(Series::new("low".into(), &bars.low)),
                Column::from(Series::new("close".into(), &bars.close)),
                Column::from(Series::new(
                    "volume".into(),
                    bars.volume
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (i != 5).then_some(*v))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let null_path = dir.path().join("null-volume.parquet");
        ParquetWriter::new(File::create(&null_path).unwrap())
            .finish(&mut with_null)
            .unwrap();
        for path in &files {
            let (loaded, seen) =
                super::super::load_then(path, &LoadOptions::default(), |close| bits(close))
                    .unwrap();
            assert_eq!(seen, bits(&loaded.bars.close), "{}", path.display());
            // A CSV holds the prices as decimal text: compare with what `load` reads.
            let plain = load(path, &LoadOptions::default()).unwrap();
            assert!(same_bits(&loaded.bars, &plain.bars), "{}", path.display());
        }
        // A null volume: an error naming it, whichever path the close prices took.
        let err = super::super::load_then(&null_path, &LoadOptions::default(), |c| c.len())
            .unwrap_err()
            .to_string();
        assert!(err.contains("row 6") && err.contains("\"volume\""), "{err}");
    }

    /// A row that breaks a rule in a column decoded after the close prices: the consumer has
    /// run on them, but its result goes with the error that names the row; a bad close
    /// price: the consumer never runs.
    #[test]
    fn load_then_returns_no_result_from_a_file_with_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let bars = gauntlet_fixtures::generate_ohlcv_every(4, 30_000, 60).unwrap();
        let mut late_high = bars.clone();
        late_high.high[29_000] = late_high.open[29_000].min(late_high.close[29_000]) * 0.9;
        let mut bad_close = bars.clone();
        bad_close.close[123] = -1.0;
        for (name, broken, want, consumed) in [
            ("late-high", &late_high, "row 29001, column \"high\"", true),
            ("bad-close", &bad_close, "row 124, column \"close\"", false),
        ] {
            let path = dir.path().join(format!("{name}.parquet"));
            write_parquet_with(broken, &path, ParquetCompression::default(), Some(8_000)).unwrap();
            let ran = std::sync::atomic::AtomicBool::new(false);
            let err = super::super::load_then(&path, &LoadOptions::default(), |close| {
                ran.store(true, Ordering::Relaxed);
                close.len()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(want), "{name}: {err}");
            assert_eq!(ran.load(Ordering::Relaxed), consumed, "{name}");
        }
    }

    /// Row groups of a column finishing in any order land in their rows: appended in order,
    /// after zeros when a later one is first, over those zeros when the earlier one follows.
    #[test]
    fn row_groups_finishing_out_of_order_land_in_their_rows() {
        let bytes = |xs: &[f64]| xs.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mut column = Vec::new();
        put(&mut column, 3, &bytes(&[4.0, 5.0]));
        assert_eq!(column, [0.0, 0.0, 0.0, 4.0, 5.0]);
        put(&mut column, 5, &bytes(&[6.0]));
        put(&mut column, 0, &bytes(&[1.0, 2.0]));
        put(&mut column, 2, &bytes(&[3.0]));
        assert_eq!(column, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // Unaligned bytes (a page's values after an odd-length level prefix) read the same.
        let mut odd = vec![0u8];
        odd.extend(bytes(&[7.0, 8.0]));
        put(&mut column, 6, &odd[1..]);
        assert_eq!(column[6..], [7.0, 8.0]);
    }

    /// A Parquet file whose metadata claims more bars than `MAX_BARS` is refused by name
    /// before anything is allocated for them (here a file of 200 bars whose footer was
    /// rewritten to claim 10¹²: without the check the page path, or polars' reader when the
    /// counts disagree, asks for 8 TB and the process aborts).
    #[test]
    fn a_file_claiming_too_many_bars_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liar.parquet");
        let bars = gauntlet_fixtures::generate_ohlcv(1, 200).unwrap();
        write_parquet_with(&bars, &path, ParquetCompression::Uncompressed, None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        assert_eq!(&bytes[n - 4..], b"PAR1");
        let footer_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
        let footer = &bytes[n - 8 - footer_len..n - 8];
        // Thrift compact: num_rows (i64) is field 3 of FileMetaData, right after the schema
        // list, and of the RowGroup, right after total_byte_size: header 0x16, then the
        // zigzag varint of 200 (400 = 0x90 0x03).
        let mut claim = vec![0x16];
        let mut zigzag: u64 = 2 * 1_000_000_000_000;
        while zigzag >= 0x80 {
            claim.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
        claim.push(zigzag as u8);
        // (Each column chunk's num_values, also 200 with the same header, claims it too.)
        // Every claim, or all but the file's own count (which then disagrees with its row
        // group: polars' reader would size its buffers by the row group).
        for keep_file_count in [false, true] {
            let (mut lying, mut claims) = (Vec::new(), 0);
            let mut rest = footer;
            while let Some(at) = rest.windows(3).position(|w| w == [0x16, 0x90, 0x03]) {
                lying.extend(&rest[..at]);
                if keep_file_count && claims == 0 {
                    lying.extend(&rest[at..at + 3]);
                } else {
                    lying.extend(&claim);
                }
                rest = &rest[at + 3..];
                claims += 1;
            }
            lying.extend(rest);
            assert!(claims >= 2, "{claims}");
            let mut file = bytes[..n - 8 - footer_len].to_vec();
            file.extend(&lying);
            file.extend((lying.len() as u32).to_le_bytes());
            file.extend(b"PAR1");
            std::fs::write(&path, file).unwrap();
            let err = load(&path, &LoadOptions::default()).unwrap_err();
            assert!(
                matches!(
                    err,
                    super::super::DataError::TooManyBars {
                        bars: 1_000_000_000_000,
                        limit: super::super::MAX_BARS,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("limit of 100000000"), "{err}");
        }
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
                <i64 as Plain>::check(&short.ts_ns, 0, true),
                Some(scan_rows(&short)),
                "{n} bars"
            );
            assert_eq!(<i64 as Plain>::check(&short.ts_ns[..1], 0, false), None);
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
            if let (Some((got, _)), _) = read_plain(
                &file,
                &metadata,
                &schema,
                &ColumnNames::default(),
                Consumer::Pending(|_: &[f64]| ()),
            ) {
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
