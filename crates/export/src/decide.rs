//! The decide pass with bounded memory: which rows an export keeps, and in which split.
//!
//! The decision is the one a single in-order scan makes (first occurrence in the fixed order
//! wins): a row with `kept = false` is dropped; a row whose id an earlier row (not dropped as
//! `kept = false`) had is dropped; the pairs of one listwise record (consecutive judged rows
//! with one rubric) follow the verdict of the first; a judged row whose normalised text an
//! earlier judged row had is an exact duplicate; a judged row whose MinHash signature shares a
//! band bucket with one of the first [`dedup::BUCKET_REPRESENTATIVES`] representatives (kept
//! rows) of that bucket, at or above the similarity threshold, is a near duplicate.
//!
//! Instead of holding every id, text hash and signature in memory, the facts of each row are
//! spilled to local temporary files and the decision is made in steps, each holding one hash
//! partition at a time:
//! 1. ids, partitioned by id hash: the first row of each id wins;
//! 2. an in-order scan marks the judged rows and their followers;
//! 3. text hashes of judged rows, partitioned by hash: the first row of each text wins;
//! 4. band keys of the remaining rows, partitioned by key hash; buckets of one row are dropped
//!    (they can never collide). Whether a row is a representative depends on earlier rows in
//!    other partitions, so the near-duplicate verdicts are found by iterating over the
//!    partitions until nothing changes: every dependency points to an earlier row, so round
//!    `k` settles every row whose chain of earlier near rows is shorter than `k`, and the
//!    result is exactly the in-order scan's (a round without a change is the last).
//!
//! Memory: one partition (at most [`PARTITION_ROWS`] rows or 8 × that many band entries) and
//! two bits per row (the representative and near-duplicate flags). Disk: 18 bytes per row,
//! 128 more with near-duplicate detection, and the partition files.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::dedup::{self, BANDS, BUCKET_REPRESENTATIVES, PERMUTATIONS, Signature};

/// Rows (or row entries) one partition holds at most, which bounds the memory of each step.
pub const PARTITION_ROWS: u64 = 1 << 20;
/// Partition files open at once at most.
const MAX_PARTITIONS: u64 = 256;

/// What the decide pass needs of one row, computed from its decision columns.
#[derive(Debug, Clone)]
pub struct RowFacts {
    /// The row carries `kept = false` (a rubric the consistency filter rejected).
    pub not_kept: bool,
    /// Hash of the row id.
    pub id: u64,
    /// Hash of the rubric id (crg): consecutive judged rows with one rubric share a verdict.
    pub rubric: Option<u64>,
    /// Hash of the normalised dedup text.
    pub text: u64,
    /// MinHash signature of the normalised text (near-duplicate detection on).
    pub signature: Option<Signature>,
    /// The split the row goes to if it is kept.
    pub split: u8,
}

/// How a row was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep(u8),
    NotKept,
    DuplicateId,
    Exact,
    Near,
}

impl Verdict {
    fn to_byte(self) -> u8 {
        match self {
            Verdict::Keep(split) => split,
            Verdict::NotKept => 0xFC,
            Verdict::DuplicateId => 0xFD,
            Verdict::Exact => 0xFE,
            Verdict::Near => 0xFF,
        }
    }

    pub fn from_byte(byte: u8) -> Self {
        match byte {
            0xFC => Verdict::NotKept,
            0xFD => Verdict::DuplicateId,
            0xFE => Verdict::Exact,
            0xFF => Verdict::Near,
            split => Verdict::Keep(split),
        }
    }

    /// The split of a kept row.
    pub fn split(self) -> Option<u8> {
        match self {
            Verdict::Keep(split) => Some(split),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("decide pass, temporary file {path}: {source}")]
pub struct SpillError {
    path: String,
    source: std::io::Error,
}

type Result<T> = std::result::Result<T, SpillError>;

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> SpillError + '_ {
    move |source| SpillError {
        path: path.display().to_string(),
        source,
    }
}

/// A file of fixed-size records written in order.
struct Spill {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl Spill {
    fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(io_error(&path))?;
        Ok(Self {
            writer: BufWriter::with_capacity(64 << 10, file),
            path,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes).map_err(io_error(&self.path))
    }

    fn finish(mut self) -> Result<PathBuf> {
        self.writer.flush().map_err(io_error(&self.path))?;
        Ok(self.path)
    }
}

/// Reads fixed-size records of `N` bytes in order; `None` at the end.
struct Records<const N: usize> {
    path: PathBuf,
    reader: BufReader<File>,
}

impl<const N: usize> Records<N> {
    fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io_error(path))?;
        Ok(Self {
            path: path.to_owned(),
            reader: BufReader::with_capacity(64 << 10, file),
        })
    }

    fn next(&mut self) -> Result<Option<[u8; N]>> {
        let mut record = [0u8; N];
        match self.reader.read_exact(&mut record) {
            Ok(()) => Ok(Some(record)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(io_error(&self.path)(e)),
        }
    }
}

/// Ascending row numbers from one file per partition, merged into one ascending sequence
/// (each file is ascending because rows are spilled in order).
struct MergedRows {
    sources: Vec<(Records<8>, Option<u64>)>,
}

impl MergedRows {
    fn open(paths: &[PathBuf]) -> Result<Self> {
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let mut records = Records::<8>::open(path)?;
            let head = records.next()?.map(u64::from_le_bytes);
            sources.push((records, head));
        }
        Ok(Self { sources })
    }

    /// Whether `row` is in the set; rows must be asked in ascending order.
    fn contains(&mut self, row: u64) -> Result<bool> {
        let mut found = false;
        for (records, head) in &mut self.sources {
            while let Some(value) = *head {
                if value > row {
                    break;
                }
                found |= value == row;
                *head = records.next()?.map(u64::from_le_bytes);
            }
        }
        Ok(found)
    }
}

/// One bit per row.
struct Bits(Vec<u64>);

impl Bits {
    fn new(rows: u64) -> Self {
        Self(vec![0; rows.div_ceil(64) as usize])
    }
    fn set(&mut self, row: u64) {
        self.0[(row / 64) as usize] |= 1 << (row % 64);
    }
    fn get(&self, row: u64) -> bool {
        self.0[(row / 64) as usize] & (1 << (row % 64)) != 0
    }
}

/// Row kinds of the scan in step 2.
const STATUS_DROPPED: u8 = 0;
const STATUS_JUDGED: u8 = 1;
const STATUS_FOLLOWER: u8 = 2;

/// Collects the facts of every row in export order, then decides.
pub struct Decider {
    dir: tempfile::TempDir,
    partition_rows: u64,
    id_partitions: Vec<Spill>,
    rows: Spill,
    signatures: Option<Spill>,
    count: u64,
}

/// Counts of a finished decision, and the file holding one verdict byte per row.
pub struct Decisions {
    /// The temporary folder the verdict file lives in (removed when this is dropped).
    _dir: tempfile::TempDir,
    pub verdicts: PathBuf,
    pub rows: u64,
    pub not_kept: u64,
    pub duplicate_ids: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// Rounds the near-duplicate resolution took (0 when it was off or nothing collided).
    pub near_rounds: u32,
}

const ROW_RECORD: usize = 18;

fn partitions_for(entries: u64, partition_rows: u64) -> u64 {
    entries
        .div_ceil(partition_rows.max(1))
        .clamp(1, MAX_PARTITIONS)
}

fn partition_of(hash: u64, partitions: usize) -> usize {
    // the low bits pick the partition; hash maps inside use all of them
    (hash.rotate_left(17) % partitions as u64) as usize
}

impl Decider {
    /// A decider for about `expected_rows` rows (it sizes the partitions; more or fewer rows
    /// are fine), spilling under the system temporary folder.
    pub fn new(expected_rows: u64, near_dedup: bool, partition_rows: u64) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rubricmill-export-")
            .tempdir()
            .map_err(io_error(&std::env::temp_dir()))?;
        let partitions = partitions_for(expected_rows, partition_rows);
        let id_partitions = (0..partitions)
            .map(|p| Spill::create(dir.path().join(format!("ids-{p}"))))
            .collect::<Result<_>>()?;
        let rows = Spill::create(dir.path().join("rows"))?;
        let signatures = near_dedup
            .then(|| Spill::create(dir.path().join("signatures")))
            .transpose()?;
        Ok(Self {
            dir,
            partition_rows,
            id_partitions,
            rows,
            signatures,
            count: 0,
        })
    }

    /// Adds the next row in export order.
    pub fn push(&mut self, facts: &RowFacts) -> Result<()> {
        let row = self.count;
        self.count += 1;
        let mut record = [0u8; ROW_RECORD];
        record[0] = u8::from(facts.not_kept) | (u8::from(facts.rubric.is_some()) << 1);
        record[1] = facts.split;
        record[2..10].copy_from_slice(&facts.rubric.unwrap_or(0).to_le_bytes());
        record[10..18].copy_from_slice(&facts.text.to_le_bytes());
        self.rows.write(&record)?;
        if let Some(signatures) = &mut self.signatures {
            let signature = facts.signature.unwrap_or([0; PERMUTATIONS]);
            let mut bytes = [0u8; PERMUTATIONS * 2];
            for (chunk, value) in bytes.chunks_exact_mut(2).zip(signature) {
                chunk.copy_from_slice(&value.to_le_bytes());
            }
            signatures.write(&bytes)?;
        }
        if !facts.not_kept {
            let partition = partition_of(facts.id, self.id_partitions.len());
            let mut entry = [0u8; 16];
            entry[..8].copy_from_slice(&facts.id.to_le_bytes());
            entry[8..].copy_from_slice(&row.to_le_bytes());
            self.id_partitions[partition].write(&entry)?;
        }
        Ok(())
    }

    /// Decides every row pushed; `exact` turns exact-duplicate removal on, `threshold`
    /// near-duplicate removal (it needs a decider made with `near_dedup`).
    pub fn finish(self, exact: bool, threshold: Option<f64>) -> Result<Decisions> {
        let Decider {
            dir,
            partition_rows,
            id_partitions,
            rows,
            signatures,
            count,
        } = self;
        let rows_path = rows.finish()?;
        let signatures_path = signatures.map(Spill::finish).transpose()?;
        let partitions = partitions_for(count, partition_rows) as usize;

        // 1. ids: the first row of each id wins.
        let mut id_dup_paths = Vec::new();
        for (p, spill) in id_partitions.into_iter().enumerate() {
            let path = spill.finish()?;
            let out_path = dir.path().join(format!("id-dups-{p}"));
            first_occurrences(&path, &out_path)?;
            std::fs::remove_file(&path).map_err(io_error(&path))?;
            id_dup_paths.push(out_path);
        }

        // 2. judged rows and their followers; text hashes of judged rows partitioned.
        let status_path = dir.path().join("status");
        let mut status = Spill::create(status_path.clone())?;
        let mut text_partitions = (0..if exact { partitions } else { 0 })
            .map(|p| Spill::create(dir.path().join(format!("texts-{p}"))))
            .collect::<Result<Vec<_>>>()?;
        {
            let mut id_dups = MergedRows::open(&id_dup_paths)?;
            let mut records = Records::<ROW_RECORD>::open(&rows_path)?;
            let mut last_rubric: Option<u64> = None;
            let mut row = 0u64;
            while let Some(record) = records.next()? {
                let not_kept = record[0] & 1 != 0;
                let rubric = (record[0] & 2 != 0)
                    .then(|| u64::from_le_bytes(record[2..10].try_into().expect("8 bytes")));
                let kind = if not_kept || id_dups.contains(row)? {
                    STATUS_DROPPED
                } else if rubric.is_some() && rubric == last_rubric {
                    STATUS_FOLLOWER
                } else {
                    if rubric.is_some() {
                        last_rubric = rubric;
                    }
                    if exact {
                        let text = u64::from_le_bytes(record[10..18].try_into().expect("8"));
                        let partition = partition_of(text, text_partitions.len());
                        let mut entry = [0u8; 16];
                        entry[..8].copy_from_slice(&text.to_le_bytes());
                        entry[8..].copy_from_slice(&row.to_le_bytes());
                        text_partitions[partition].write(&entry)?;
                    }
                    STATUS_JUDGED
                };
                status.write(&[kind])?;
                row += 1;
            }
        }
        status.finish()?;

        // 3. texts: the first judged row of each text wins.
        let mut exact_paths = Vec::new();
        for (p, spill) in text_partitions.into_iter().enumerate() {
            let path = spill.finish()?;
            let out_path = dir.path().join(format!("exact-dups-{p}"));
            first_occurrences(&path, &out_path)?;
            std::fs::remove_file(&path).map_err(io_error(&path))?;
            exact_paths.push(out_path);
        }

        // 4. near duplicates among judged rows that are not exact duplicates.
        let mut near = Bits::new(count);
        let mut near_rounds = 0;
        if let (Some(threshold), Some(signatures_path)) = (threshold, &signatures_path) {
            let band_partitions = partitions_for(count * BANDS as u64, partition_rows) as usize;
            let mut bands = (0..band_partitions)
                .map(|p| Spill::create(dir.path().join(format!("bands-{p}"))))
                .collect::<Result<Vec<_>>>()?;
            let mut candidates = Bits::new(count);
            {
                let mut statuses = Records::<1>::open(&status_path)?;
                let mut exact_dups = MergedRows::open(&exact_paths)?;
                let mut signatures = Records::<{ PERMUTATIONS * 2 }>::open(signatures_path)?;
                let mut row = 0u64;
                while let Some([kind]) = statuses.next()? {
                    let signature = signatures.next()?.map(|b| decode_signature(&b));
                    if kind == STATUS_JUDGED && !exact_dups.contains(row)? {
                        candidates.set(row);
                        let signature = signature.unwrap_or([0; PERMUTATIONS]);
                        for band in 0..BANDS {
                            let key = dedup::band_key(&signature, band);
                            let partition = partition_of(u64::from(key), bands.len());
                            let mut entry = [0u8; 12];
                            entry[..4].copy_from_slice(&key.to_le_bytes());
                            entry[4..].copy_from_slice(&row.to_le_bytes());
                            bands[partition].write(&entry)?;
                        }
                    }
                    row += 1;
                }
            }
            // Keep only buckets with two entries or more (a bucket of one never collides).
            let mut collision_paths = Vec::new();
            for (p, spill) in bands.into_iter().enumerate() {
                let path = spill.finish()?;
                let out_path = dir.path().join(format!("collisions-{p}"));
                let entries = shared_buckets(&path)?;
                if !entries.is_empty() {
                    let mut out = Spill::create(out_path.clone())?;
                    for (key, row) in &entries {
                        let mut entry = [0u8; 12];
                        entry[..4].copy_from_slice(&key.to_le_bytes());
                        entry[4..].copy_from_slice(&row.to_le_bytes());
                        out.write(&entry)?;
                    }
                    collision_paths.push(out.finish()?);
                }
                std::fs::remove_file(&path).map_err(io_error(&path))?;
            }
            let mut lookup = SignatureFile::open(signatures_path)?;
            // Start with every candidate a representative; each round recomputes the near
            // flags from the representatives of the previous round.
            let mut representatives = candidates;
            loop {
                if collision_paths.is_empty() {
                    break;
                }
                near_rounds += 1;
                let mut flagged = Bits::new(count);
                for path in &collision_paths {
                    let entries = read_entries(path)?;
                    resolve_partition(
                        &entries,
                        &representatives,
                        &mut flagged,
                        &mut lookup,
                        threshold,
                    )?;
                }
                let mut changed = false;
                for (word, (rep, flag)) in representatives.0.iter_mut().zip(&flagged.0).enumerate()
                {
                    // a representative is a candidate without a near flag
                    let candidate = *rep | (near.0[word]);
                    let next = candidate & !flag;
                    changed |= next != *rep;
                    *rep = next;
                    near.0[word] = candidate & flag;
                }
                if !changed {
                    break;
                }
            }
        }

        // 5. the verdict of every row, in order.
        let verdicts = dir.path().join("verdicts");
        let mut out = Spill::create(verdicts.clone())?;
        let mut counts = [0u64; 4];
        {
            let mut statuses = Records::<1>::open(&status_path)?;
            let mut records = Records::<ROW_RECORD>::open(&rows_path)?;
            let mut exact_dups = MergedRows::open(&exact_paths)?;
            let mut last_judged: Option<Verdict> = None;
            let mut row = 0u64;
            while let (Some([kind]), Some(record)) = (statuses.next()?, records.next()?) {
                let split = record[1];
                let verdict = match kind {
                    STATUS_DROPPED if record[0] & 1 != 0 => Verdict::NotKept,
                    STATUS_DROPPED => Verdict::DuplicateId,
                    STATUS_FOLLOWER => last_judged.unwrap_or(Verdict::Keep(split)),
                    _ => {
                        let verdict = if exact_dups.contains(row)? {
                            Verdict::Exact
                        } else if near.get(row) {
                            Verdict::Near
                        } else {
                            Verdict::Keep(split)
                        };
                        last_judged = Some(verdict);
                        verdict
                    }
                };
                // a follower kept with its record keeps its own split: its split key decides
                let verdict = match verdict {
                    Verdict::Keep(_) => Verdict::Keep(split),
                    other => other,
                };
                match verdict {
                    Verdict::NotKept => counts[0] += 1,
                    Verdict::DuplicateId => counts[1] += 1,
                    Verdict::Exact => counts[2] += 1,
                    Verdict::Near => counts[3] += 1,
                    Verdict::Keep(_) => {}
                }
                out.write(&[verdict.to_byte()])?;
                row += 1;
            }
        }
        out.finish()?;
        for path in [&rows_path, &status_path] {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        if let Some(path) = &signatures_path {
            std::fs::remove_file(path).map_err(io_error(path))?;
        }
        Ok(Decisions {
            _dir: dir,
            verdicts,
            rows: count,
            not_kept: counts[0],
            duplicate_ids: counts[1],
            exact_duplicates: counts[2],
            near_duplicates: counts[3],
            near_rounds,
        })
    }
}

impl Decisions {
    /// The verdicts in export order.
    pub fn reader(&self) -> Result<VerdictReader> {
        let file = File::open(&self.verdicts).map_err(io_error(&self.verdicts))?;
        Ok(VerdictReader {
            path: self.verdicts.clone(),
            reader: BufReader::with_capacity(64 << 10, file),
        })
    }
}

/// Reads verdicts in export order, a batch at a time.
pub struct VerdictReader {
    path: PathBuf,
    reader: BufReader<File>,
}

impl VerdictReader {
    /// The verdicts of the next `rows` rows.
    pub fn next_batch(&mut self, rows: usize) -> Result<Vec<Verdict>> {
        let mut bytes = vec![0u8; rows];
        self.reader
            .read_exact(&mut bytes)
            .map_err(io_error(&self.path))?;
        Ok(bytes.into_iter().map(Verdict::from_byte).collect())
    }

    /// Skips the verdicts of `rows` rows.
    pub fn skip(&mut self, rows: u64) -> Result<()> {
        self.reader
            .seek_relative(rows as i64)
            .map_err(io_error(&self.path))
    }
}

fn decode_signature(bytes: &[u8; PERMUTATIONS * 2]) -> Signature {
    std::array::from_fn(|i| u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]))
}

/// Signatures by row number, read from the signature file.
struct SignatureFile {
    path: PathBuf,
    file: File,
}

impl SignatureFile {
    fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            path: path.to_owned(),
            file: File::open(path).map_err(io_error(path))?,
        })
    }

    fn get(&mut self, row: u64) -> Result<Signature> {
        let mut bytes = [0u8; PERMUTATIONS * 2];
        self.file
            .seek(SeekFrom::Start(row * (PERMUTATIONS as u64 * 2)))
            .and_then(|_| self.file.read_exact(&mut bytes))
            .map_err(io_error(&self.path))?;
        Ok(decode_signature(&bytes))
    }
}

/// Reads `(key, row)` entries of 16 bytes in row order and writes, ascending, the rows whose
/// key an earlier entry had.
fn first_occurrences(path: &Path, out_path: &Path) -> Result<()> {
    let mut records = Records::<16>::open(path)?;
    let mut seen = HashSet::new();
    let mut out = Spill::create(out_path.to_owned())?;
    while let Some(entry) = records.next()? {
        let key = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
        if !seen.insert(key) {
            out.write(&entry[8..])?;
        }
    }
    out.finish()?;
    Ok(())
}

fn read_entries(path: &Path) -> Result<Vec<(u32, u64)>> {
    let mut records = Records::<12>::open(path)?;
    let mut entries = Vec::new();
    while let Some(entry) = records.next()? {
        entries.push((
            u32::from_le_bytes(entry[..4].try_into().expect("4 bytes")),
            u64::from_le_bytes(entry[4..].try_into().expect("8 bytes")),
        ));
    }
    Ok(entries)
}

/// The band entries of a partition whose bucket holds two entries or more, sorted by bucket
/// and row.
fn shared_buckets(path: &Path) -> Result<Vec<(u32, u64)>> {
    let mut entries = read_entries(path)?;
    entries.sort_unstable();
    let mut shared = Vec::new();
    for bucket in entries.chunk_by(|a, b| a.0 == b.0) {
        if bucket.len() > 1 {
            shared.extend_from_slice(bucket);
        }
    }
    Ok(shared)
}

/// One round over one partition's shared buckets: walks each bucket in row order, as the
/// in-order scan would have filled it, and flags every row that meets a similar
/// representative among the first [`BUCKET_REPRESENTATIVES`] of the bucket before it.
fn resolve_partition(
    entries: &[(u32, u64)],
    representatives: &Bits,
    flagged: &mut Bits,
    lookup: &mut SignatureFile,
    threshold: f64,
) -> Result<()> {
    let mut cache: std::collections::HashMap<u64, Signature> = std::collections::HashMap::new();
    for bucket in entries.chunk_by(|a, b| a.0 == b.0) {
        let mut members: Vec<u64> = Vec::new();
        let mut previous: Option<u64> = None;
        for &(_, row) in bucket {
            // two bands of one row may share a key: the row is checked once, before it is
            // added (as the scan checks all its bands, then adds the row to each)
            if previous != Some(row) {
                let signature = match cache.get(&row) {
                    Some(s) => *s,
                    None => {
                        let s = lookup.get(row)?;
                        cache.insert(row, s);
                        s
                    }
                };
                let mut near = false;
                for member in &members {
                    let other = match cache.get(member) {
                        Some(s) => *s,
                        None => lookup.get(*member)?,
                    };
                    if dedup::similarity(&other, &signature) >= threshold {
                        near = true;
                        break;
                    }
                }
                if near {
                    flagged.set(row);
                }
            }
            previous = Some(row);
            if representatives.get(row) && members.len() < BUCKET_REPRESENTATIVES {
                members.push(row);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{NearDuplicates, exact_key, normalize, signature};

    /// The in-order scan with every id, text and signature in memory: what the decision must
    /// equal.
    fn in_memory(rows: &[RowFacts], exact: bool, threshold: Option<f64>) -> Vec<Verdict> {
        let mut ids = HashSet::new();
        let mut texts = HashSet::new();
        let mut near = threshold.map(NearDuplicates::new);
        let mut last: Option<(u64, Verdict)> = None;
        rows.iter()
            .map(|row| {
                if row.not_kept {
                    return Verdict::NotKept;
                }
                if !ids.insert(row.id) {
                    return Verdict::DuplicateId;
                }
                let verdict = match (&last, row.rubric) {
                    (Some((rubric, verdict)), Some(r)) if *rubric == r => *verdict,
                    _ => {
                        let verdict = if exact && !texts.insert(row.text) {
                            Verdict::Exact
                        } else if near.as_mut().is_some_and(|n| {
                            n.is_duplicate_signature(row.signature.expect("signature"))
                        }) {
                            Verdict::Near
                        } else {
                            Verdict::Keep(0)
                        };
                        if let Some(r) = row.rubric {
                            last = Some((r, verdict));
                        }
                        verdict
                    }
                };
                match verdict {
                    Verdict::Keep(_) => Verdict::Keep(row.split),
                    other => other,
                }
            })
            .collect()
    }

    fn facts(id: &str, text: &str, rubric: Option<&str>, not_kept: bool) -> RowFacts {
        let normalized = normalize(text);
        RowFacts {
            not_kept,
            id: exact_key(id),
            rubric: rubric.map(exact_key),
            text: exact_key(&normalized),
            signature: Some(signature(&normalized)),
            split: (dedup::hash64(id.as_bytes()) % 3) as u8,
        }
    }

    /// Rows with planted duplicates: repeated ids, exact copies, near copies (a word added or
    /// changed), chains of near copies (each close to the one before), families sharing a
    /// template, rubric groups, and rows not kept.
    fn planted(count: usize) -> Vec<RowFacts> {
        let words = [
            "cache", "index", "sensor", "graph", "fusion", "ranking", "privacy", "energy", "robot",
            "survey", "drift", "shard", "kernel", "vision", "speech", "market",
        ];
        let text = |i: usize| -> String {
            (0..24)
                .map(|k| {
                    words[(i * 7 + k * (i % 5 + 1) + k * k) % words.len()].to_owned()
                        + &format!("{}", (i * 31 + k) % 97)
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut rows = Vec::new();
        let mut originals: Vec<String> = Vec::new();
        for i in 0..count {
            let kind = i % 11;
            let base = originals
                .get((i * 13) % originals.len().max(1))
                .cloned()
                .unwrap_or_else(|| text(i));
            let row = match kind {
                1 if !originals.is_empty() => facts(&format!("r{}", i - 1), &text(i), None, false),
                2 if !originals.is_empty() => {
                    facts(&format!("r{i}"), &base.to_uppercase(), None, false)
                }
                3 if !originals.is_empty() => {
                    facts(&format!("r{i}"), &format!("{base} today"), None, false)
                }
                4 if !originals.is_empty() => {
                    // a chain: near the previous row, which may itself be a near copy
                    let previous = originals.last().cloned().unwrap_or_default();
                    let changed = format!("{previous} extra{i}");
                    originals.push(changed.clone());
                    facts(&format!("r{i}"), &changed, None, false)
                }
                5 => facts(
                    &format!("r{i}"),
                    &text(i),
                    Some(&format!("rubric{}", i / 3)),
                    false,
                ),
                6 => facts(
                    &format!("r{i}"),
                    &text(i),
                    Some(&format!("rubric{}", i / 3)),
                    false,
                ),
                7 => facts(&format!("r{i}"), &text(i), None, true),
                8 if !originals.is_empty() => {
                    // a word swapped in the middle
                    let mut w: Vec<&str> = base.split(' ').collect();
                    let middle = w.len() / 2;
                    w[middle] = "swapped";
                    facts(&format!("r{i}"), &w.join(" "), None, false)
                }
                _ => {
                    let t = text(i);
                    originals.push(t.clone());
                    facts(&format!("r{i}"), &t, None, false)
                }
            };
            rows.push(row);
        }
        rows
    }

    fn bounded(
        rows: &[RowFacts],
        exact: bool,
        threshold: Option<f64>,
        partition_rows: u64,
    ) -> (Vec<Verdict>, Decisions) {
        let mut decider =
            Decider::new(rows.len() as u64, threshold.is_some(), partition_rows).unwrap();
        for row in rows {
            decider.push(row).unwrap();
        }
        let decisions = decider.finish(exact, threshold).unwrap();
        let verdicts = decisions.reader().unwrap().next_batch(rows.len()).unwrap();
        (verdicts, decisions)
    }

    #[test]
    fn partitioned_decisions_equal_the_in_memory_scan() {
        let rows = planted(3000);
        for (exact, threshold) in [
            (true, Some(0.8)),
            (false, Some(0.8)),
            (true, None),
            (true, Some(0.5)),
        ] {
            let expected = in_memory(&rows, exact, threshold);
            let near = expected.iter().filter(|v| **v == Verdict::Near).count();
            if threshold == Some(0.8) {
                assert!(near > 100, "the planted near copies are found: {near}");
            }
            for partition_rows in [64, 1000, PARTITION_ROWS] {
                let (verdicts, decisions) = bounded(&rows, exact, threshold, partition_rows);
                assert_eq!(verdicts.len(), expected.len());
                let differing: Vec<usize> = (0..rows.len())
                    .filter(|i| verdicts[*i] != expected[*i])
                    .collect();
                assert!(
                    differing.is_empty(),
                    "exact {exact} threshold {threshold:?} partitions of {partition_rows}: rows {differing:?} differ"
                );
                assert_eq!(decisions.near_duplicates as usize, near);
                assert_eq!(
                    decisions.exact_duplicates as usize,
                    expected.iter().filter(|v| **v == Verdict::Exact).count()
                );
                assert_eq!(
                    decisions.duplicate_ids as usize,
                    expected
                        .iter()
                        .filter(|v| **v == Verdict::DuplicateId)
                        .count()
                );
            }
        }
    }

    #[test]
    fn a_chain_of_near_copies_needs_several_rounds_and_ends_as_the_scan_does() {
        // a, a+x (near a), a+x+y (near a+x but maybe not a): the third row's verdict depends
        // on whether the second is a representative.
        let base = "one two three four five six seven eight nine ten eleven twelve";
        let mut texts = vec![base.to_owned()];
        for i in 0..12 {
            let previous = texts.last().unwrap().clone();
            texts.push(format!("{previous} more{i}"));
        }
        let rows: Vec<RowFacts> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| facts(&format!("c{i}"), t, None, false))
            .collect();
        let expected = in_memory(&rows, true, Some(0.8));
        assert!(expected.contains(&Verdict::Near));
        assert!(
            expected
                .iter()
                .skip(1)
                .any(|v| matches!(v, Verdict::Keep(_))),
            "{expected:?}"
        );
        let (verdicts, decisions) = bounded(&rows, true, Some(0.8), 2);
        assert_eq!(verdicts, expected);
        assert!(decisions.near_rounds >= 2, "{}", decisions.near_rounds);
    }
}
