//! Reading a run's log: pages from an offset, the offsets a reader may resume from, and
//! whether the log is complete. The file format is `ferry-executor`'s; only the engine reads
//! it.

use ferry_core::RunId;
use ferry_executor::LogChunk;

use crate::{Engine, Error, Result};

impl Engine {
    /// Up to `limit` lines from `offset` (0, or a `next_offset` of an earlier page), only of
    /// `action` when given.
    pub async fn read_log(
        &self,
        run: RunId,
        offset: u64,
        limit: usize,
        action: Option<i64>,
    ) -> Result<LogChunk> {
        Ok(ferry_executor::read_log(&self.log_path(run), offset, limit, action).await?)
    }

    /// The size of the run's log file (0 while it does not exist).
    pub async fn log_len(&self, run: RunId) -> Result<u64> {
        match tokio::fs::metadata(self.log_path(run)).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether every line of the run is on disk: the run is over and its driver is gone.
    pub async fn log_complete(&self, run: RunId) -> Result<bool> {
        let row = self.inner.store.run(run).await?;
        Ok(row.status.is_terminal() && !self.is_active(run))
    }

    /// Offsets must be 0 or a `next_offset` handed out earlier, which always follows a
    /// record's newline; anything else would have the reader parse half a record. An offset
    /// past the end is allowed (it reads as an empty page).
    pub async fn check_log_offset(&self, run: RunId, offset: u64) -> Result<()> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        // Offsets are int64 on the wire, as a client in any language can hold them.
        if offset > i64::MAX as u64 {
            return Err(Error::InvalidOffset(format!(
                "offset {offset} is past the largest offset a log can have"
            )));
        }
        if offset == 0 || offset > self.log_len(run).await? {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(self.log_path(run)).await?;
        file.seek(std::io::SeekFrom::Start(offset - 1)).await?;
        if file.read_u8().await? == b'\n' {
            return Ok(());
        }
        Err(Error::InvalidOffset(format!(
            "offset {offset} is not a record boundary; pass 0 or a `next_offset` from an earlier page"
        )))
    }
}
