//! The run log: one append-only file per run holding every output line of
//! every action, as JSON lines, and the reader that tails it.
//!
//! Format: one [`LogLine`] per `\n`-terminated JSON record, e.g.
//!
//! ```text
//! {"seq":7,"action":3,"n":2,"ts":"2025-01-02T03:04:05.678Z","stream":"out","text":"Plan: 1 to add"}
//! {"seq":8,"action":3,"n":3,"ts":"2025-01-02T03:04:05.679Z","stream":"out","text":"xxxx…","c":true}
//! ```
//!
//! `c: true` marks a continuation: the action printed a line longer than
//! [`MAX_LINE`](crate::MAX_LINE) bytes, and this record holds the next segment
//! of the line in the record before it (same action and stream). Readers that
//! want the original line concatenate a record with the `c` records following
//! it; `c` is omitted when false.
//!
//! Byte offsets into the file are the cursor for followers (`ferry logs -f`,
//! SSE): [`read_log`] takes the offset of a record boundary and returns the
//! offset after the last record it returned, and [`RunLog::subscribe`] says
//! when the committed length grows. Writes are buffered and flushed at least
//! every [`FLUSH_INTERVAL`] while output flows (never fsync'd per line), so a
//! follower sees a line within about 100 ms.
//!
//! A crash can leave a torn final record; readers never return it, and
//! [`RunLog::open`] truncates it before appending.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

/// Buffered output is written out at least this often while lines arrive.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);

/// Buffered output is written out once it reaches this many bytes.
const FLUSH_BYTES: usize = 1024 * 1024;

/// `read_log` returns at most about this many bytes of records.
const READ_MAX_BYTES: usize = 1024 * 1024;

/// One record of a run log: one line (or line segment) of output.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LogLine {
    /// Position in the run's log, from 1, without gaps.
    pub seq: u64,
    /// The action that printed the line.
    pub action: i64,
    /// Line number within the action, from 1 (stdout, stderr and `Sys` lines
    /// share the counter).
    pub n: u64,
    /// When Ferry received the line, with millisecond precision.
    pub ts: DateTime<Utc>,
    pub stream: Stream,
    /// The line without its `\n`; invalid UTF-8 replaced by U+FFFD.
    pub text: String,
    /// Continuation: this record continues the line of the previous record of
    /// the same action and stream (the line was longer than `MAX_LINE`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub c: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a log line came from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Out,
    Err,
    /// Lines Ferry itself writes (`$ terraform plan …`, `timed out after 30s`).
    Sys,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
            Stream::Sys => "sys",
        }
    }
}

/// The serialized form of a [`LogLine`], borrowing everything, so writing a
/// record allocates nothing. Field names and order must match `LogLine`.
#[derive(Serialize)]
struct RecordRef<'a> {
    seq: u64,
    action: i64,
    n: u64,
    ts: &'a str,
    stream: Stream,
    text: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    c: bool,
}

/// Append-only writer for one run's log file.
///
/// Single writer: exactly one `RunLog` per file at a time. Lines are buffered
/// and written by [`ActionLog::flush`] or when the buffer is old or big; the
/// length published through [`RunLog::subscribe`] only ever covers complete
/// records.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    // Invariant: opened for append; everything before `len` is complete
    // records.
    file: Arc<std::fs::File>,
    // Invariant: holds only complete records (each ending in `\n`) not yet
    // written to `file`.
    buf: Vec<u8>,
    // Invariant: `Some` iff `buf` is non-empty; when its oldest record was
    // added.
    dirty_since: Option<Instant>,
    // Invariant: the seq of the next record; one more than the last record
    // in `file` or `buf`.
    next_seq: u64,
    // Invariant: the committed length of `file`; equals the value last sent
    // on `len_tx`.
    len: u64,
    len_tx: watch::Sender<u64>,
    // Cache of the formatted timestamp, since lines mostly arrive in bursts
    // within the same millisecond.
    ts_millis: i64,
    ts_text: String,
}

impl RunLog {
    /// Opens (creating it and its parent directories if needed) the log file
    /// at `path`. If it exists — the server restarted during the run — a torn
    /// final record is truncated and sequence numbers continue after the last
    /// complete record.
    pub async fn open(path: &Path) -> io::Result<RunLog> {
        let owned = path.to_owned();
        let (file, len, last_seq) = tokio::task::spawn_blocking(move || open_blocking(&owned))
            .await
            .map_err(io::Error::other)??;
        let (len_tx, _) = watch::channel(len);
        Ok(RunLog {
            path: path.to_owned(),
            file: Arc::new(file),
            buf: Vec::with_capacity(FLUSH_BYTES + 64 * 1024),
            dirty_since: None,
            next_seq: last_seq + 1,
            len,
            len_tx,
            ts_millis: i64::MIN,
            ts_text: String::new(),
        })
    }

    /// A writer scoped to one action, with its own line counter from 1.
    pub fn action(&mut self, action_id: i64) -> ActionLog<'_> {
        ActionLog {
            log: self,
            action: action_id,
            n: 0,
        }
    }

    /// The committed byte length of the file; changes after each flush. Pass
    /// it to `read_log` as the limit of what is certainly readable.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.len_tx.subscribe()
    }

    /// The committed byte length of the file (buffered lines excluded).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the committed file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record to the buffer.
    fn push(&mut self, action: i64, n: u64, stream: Stream, text: &str, c: bool) {
        let now = Utc::now();
        let millis = now.timestamp_millis();
        if millis != self.ts_millis {
            self.ts_millis = millis;
            self.ts_text.clear();
            // Always three fraction digits, so timestamps sort as text too.
            let ms = DateTime::<Utc>::from_timestamp_millis(millis).unwrap_or(now);
            self.ts_text
                .push_str(&ms.to_rfc3339_opts(SecondsFormat::Millis, true));
        }
        let record = RecordRef {
            seq: self.next_seq,
            action,
            n,
            ts: &self.ts_text,
            stream,
            text,
            c,
        };
        // Writing into a Vec cannot fail, and RecordRef always serializes.
        serde_json::to_writer(&mut self.buf, &record).expect("log record serializes");
        self.buf.push(b'\n');
        self.next_seq += 1;
        if self.dirty_since.is_none() {
            self.dirty_since = Some(Instant::now());
        }
    }

    /// When the buffer must be flushed at the latest, if it holds anything.
    pub(crate) fn flush_deadline(&self) -> Option<Instant> {
        self.dirty_since.map(|t| t + FLUSH_INTERVAL)
    }

    /// Flushes if the buffer is big or old.
    pub(crate) async fn maybe_flush(&mut self) -> io::Result<()> {
        let due = match self.dirty_since {
            None => false,
            Some(t) => self.buf.len() >= FLUSH_BYTES || t.elapsed() >= FLUSH_INTERVAL,
        };
        if due {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes the buffer to the file (no fsync) and publishes the new length.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.buf);
        let file = Arc::clone(&self.file);
        let committed = self.len;
        let (result, mut buf) = tokio::task::spawn_blocking(move || {
            let result = write_records(&file, &buf, committed);
            (result, buf)
        })
        .await
        .map_err(io::Error::other)?;
        buf.clear();
        self.buf = buf;
        self.dirty_since = None;
        self.len = result?;
        self.len_tx.send_replace(self.len);
        Ok(())
    }
}

/// Appends `records` and returns the new file length. On failure, truncates
/// back to `committed` so no torn record is left before later appends.
fn write_records(mut file: &std::fs::File, records: &[u8], committed: u64) -> io::Result<u64> {
    match file.write_all(records) {
        Ok(()) => Ok(file.metadata()?.len()),
        Err(e) => {
            let _ = file.set_len(committed);
            Err(e)
        }
    }
}

/// Opens or creates the file; returns it (in append mode), its length after
/// truncating a torn tail, and the seq of its last record (0 if none).
fn open_blocking(path: &Path) -> io::Result<(std::fs::File, u64, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let size = file.metadata()?.len();
    let end = end_of_last_record(&mut file, size)?;
    if end != size {
        file.set_len(end)?;
    }
    let last_seq = if end == 0 {
        0
    } else {
        let start = end_of_last_record(&mut file, end - 1)?;
        let mut record = vec![0; (end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut record)?;
        let line: LogLine = serde_json::from_slice(&record).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "corrupt log record at byte {start} of {}: {e}",
                    path.display()
                ),
            )
        })?;
        line.seq
    };
    drop(file);
    let file = std::fs::OpenOptions::new().append(true).open(path)?;
    Ok((file, end, last_seq))
}

/// The offset just after the last `\n` in `file[..limit]`, or 0. Reads
/// backwards in blocks, so it costs one block for a healthy file.
fn end_of_last_record(file: &mut std::fs::File, limit: u64) -> io::Result<u64> {
    let mut block = vec![0u8; 64 * 1024];
    let mut end = limit;
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// A writer for one action's lines in a [`RunLog`].
///
/// Dropping it loses nothing already passed to it, but lines may stay
/// buffered in the `RunLog` until its next flush: call [`ActionLog::flush`]
/// when the action ends (`Running::wait` does).
#[derive(Debug)]
pub struct ActionLog<'a> {
    log: &'a mut RunLog,
    action: i64,
    // Invariant: the number of lines written for this action so far.
    n: u64,
}

impl ActionLog<'_> {
    /// Writes one line (e.g. Ferry's own `Stream::Sys` lines). The text is
    /// stored as one record even if it contains newlines.
    pub async fn line(&mut self, stream: Stream, text: &str) -> io::Result<()> {
        self.push(stream, text.as_bytes(), false);
        self.log.maybe_flush().await
    }

    /// Writes everything buffered to the file and publishes the new length.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.log.flush().await
    }

    /// The action these lines belong to.
    pub fn action_id(&self) -> i64 {
        self.action
    }

    /// Buffers one line segment; the caller flushes.
    pub(crate) fn push(&mut self, stream: Stream, bytes: &[u8], c: bool) {
        self.n += 1;
        let text = String::from_utf8_lossy(bytes);
        self.log.push(self.action, self.n, stream, &text, c);
    }

    pub(crate) fn run_log(&mut self) -> &mut RunLog {
        self.log
    }
}

/// Records read from a run log, and where to continue.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogChunk {
    pub lines: Vec<LogLine>,
    /// Pass this as `offset` to read the records after these.
    pub next_offset: u64,
}

/// Reads records starting at byte `offset`, which must be 0 or a
/// `next_offset` returned earlier: at most `max_lines` lines and about 1 MiB,
/// only those of `action` if given. A final record still being written is not
/// returned. A missing file reads as empty; an offset at or past the end
/// returns no lines and `next_offset == offset`.
pub async fn read_log(
    path: &Path,
    offset: u64,
    max_lines: usize,
    action: Option<i64>,
) -> io::Result<LogChunk> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || read_log_blocking(&path, offset, max_lines, action))
        .await
        .map_err(io::Error::other)?
}

fn read_log_blocking(
    path: &Path,
    offset: u64,
    max_lines: usize,
    action: Option<i64>,
) -> io::Result<LogChunk> {
    let mut chunk = LogChunk {
        lines: Vec::new(),
        next_offset: offset,
    };
    if max_lines == 0 {
        return Ok(chunk);
    }
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(chunk),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    if offset >= size {
        return Ok(chunk);
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    let want = (size - offset).min(READ_MAX_BYTES as u64);
    (&mut file).take(want).read_to_end(&mut buf)?;
    // A single record can exceed the read size (a 64 KiB line of control
    // characters escapes to ~384 KiB); read on until one record is complete.
    while !buf.contains(&b'\n') && (buf.len() as u64) < size - offset {
        let more = (size - offset - buf.len() as u64).min(READ_MAX_BYTES as u64);
        let before = buf.len();
        (&mut file).take(more).read_to_end(&mut buf)?;
        if buf.len() == before {
            break;
        }
    }

    let mut pos = 0;
    while let Some(i) = buf[pos..].iter().position(|&b| b == b'\n') {
        let record = &buf[pos..pos + i];
        let line: LogLine = serde_json::from_slice(record).map_err(|e| {
            let at = offset + pos as u64;
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt log record at byte {at} of {}: {e}", path.display()),
            )
        })?;
        pos += i + 1;
        chunk.next_offset = offset + pos as u64;
        if action.is_none_or(|a| a == line.action) {
            chunk.lines.push(line);
            if chunk.lines.len() >= max_lines {
                break;
            }
        }
    }
    Ok(chunk)
}
