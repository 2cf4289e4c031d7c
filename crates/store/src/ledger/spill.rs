//! The spill file: spend rows the database could not take, one JSON object per line,
//! appended and synced to disk. To be written back it is first renamed to `<file>.replay`
//! (so rows spilled meanwhile start a new file), read a slice at a time from a byte
//! offset (memory stays bounded however long the outage was), and removed once all of its
//! rows are in the database. A start finds either and writes their rows first; inserts
//! skip rows already present, so a replay cut short by a crash is simply done again.
//!
//! Files are small and only touched when the database fails, but the calls block: the
//! writer runs them on the blocking pool.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::SpendRow;

/// Rows read from the replay file, and where the next read starts.
#[derive(Debug)]
pub(crate) struct ReplayChunk {
    pub rows: Vec<SpendRow>,
    pub next_offset: u64,
    pub bad: usize,
    pub eof: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Spill {
    path: PathBuf,
    replay: PathBuf,
}

impl Spill {
    pub fn new(path: PathBuf) -> Spill {
        let mut replay = path.clone().into_os_string();
        replay.push(".replay");
        Spill {
            path,
            replay: replay.into(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends rows and syncs the file.
    pub fn append(&self, rows: &[SpendRow]) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        // A leading newline ends a line torn by a crash, so the first row here is not glued
        // to it; blank lines are skipped when reading.
        let mut out = Vec::with_capacity(rows.len() * 300 + 1);
        out.push(b'\n');
        for r in rows {
            serde_json::to_writer(&mut out, r).map_err(std::io::Error::other)?;
            out.push(b'\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(&out)?;
        f.sync_all()
    }

    /// Rows waiting in the files, counted without moving anything.
    pub fn count(&self) -> u64 {
        [&self.path, &self.replay]
            .iter()
            .filter_map(|p| std::fs::File::open(p).ok())
            .map(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| !l.trim().is_empty())
                    .count() as u64
            })
            .sum()
    }

    /// Makes sure a replay file is there to read when there is anything to replay: an
    /// unfinished one is kept; otherwise the spill file becomes it (rows spilled from now
    /// on start a new spill file). `false`: nothing to replay.
    pub fn open_replay(&self) -> std::io::Result<bool> {
        if self.replay.exists() {
            return Ok(true);
        }
        match std::fs::rename(&self.path, &self.replay) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Up to `max_rows` rows of the replay file from byte `offset`. Lines that do not parse
    /// (one torn by a crash in the middle of a write) are skipped and counted.
    pub fn read_replay(&self, offset: u64, max_rows: usize) -> std::io::Result<ReplayChunk> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.replay)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut reader = std::io::BufReader::new(f);
        let mut chunk = ReplayChunk {
            rows: Vec::new(),
            next_offset: offset,
            bad: 0,
            eof: false,
        };
        let mut line = String::new();
        while chunk.rows.len() < max_rows {
            line.clear();
            let n = reader.read_line(&mut line)?;
            if n == 0 {
                chunk.eof = true;
                break;
            }
            chunk.next_offset += n as u64;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(row) => chunk.rows.push(row),
                Err(_) => chunk.bad += 1,
            }
        }
        Ok(chunk)
    }

    /// Every row of the replay file is in the database.
    pub fn replayed(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.replay) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> SpendRow {
        SpendRow {
            request_id: format!("r{i}"),
            call_seq: 0,
            key_id: None,
            user_id: Some("u\n\"x\"".into()),
            agent_id: None,
            run_id: None,
            provider: "p".into(),
            model: "m".into(),
            prompt_tokens: i,
            completion_tokens: 1,
            cached_tokens: 0,
            cost_nanos: 5,
            saved_nanos: 0,
            estimated: true,
            status: "ok".into(),
            latency_ms: 1,
            channel: None,
            channel_user: None,
            session_id: None,
            created_at_ms: 2,
        }
    }

    #[test]
    fn rows_survive_a_round_trip_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        let spill = Spill::new(dir.path().join("sub/spill.jsonl"));
        assert!(!spill.open_replay().expect("nothing yet"));
        spill.append(&[row(1), row(2)]).expect("append");
        spill.append(&[row(3)]).expect("append");
        // A crash in the middle of a write leaves half a line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(spill.path())
            .expect("open");
        f.write_all(b"{\"request_id\":\"r4\",\"call").expect("torn");
        assert_eq!(spill.count(), 4, "three rows and a torn line");
        spill.append(&[row(6)]).expect("append after the tear");
        assert!(spill.open_replay().expect("replay"));
        assert!(!spill.path().exists(), "the spill file moved to .replay");
        // Rows spilled during the replay start a new file.
        spill.append(&[row(7)]).expect("append");
        let first = spill.read_replay(0, 2).expect("read");
        assert_eq!(first.rows, vec![row(1), row(2)]);
        assert!(!first.eof);
        let rest = spill.read_replay(first.next_offset, 100).expect("read");
        assert_eq!(rest.rows, vec![row(3), row(6)]);
        assert_eq!(rest.bad, 1);
        assert!(rest.eof);
        assert!(
            spill.open_replay().expect("unfinished"),
            "kept until replayed"
        );
        spill.replayed().expect("done");
        assert!(spill.open_replay().expect("the new spill file"));
        assert_eq!(spill.read_replay(0, 10).expect("read").rows, vec![row(7)]);
        spill.replayed().expect("done");
        assert_eq!(spill.count(), 0);
        assert!(!spill.open_replay().expect("nothing left"));
    }
}
