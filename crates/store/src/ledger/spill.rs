//! The spill file: spend rows the database could not take, one JSON object per line,
//! appended and synced to disk. To be written back it is first renamed to `<file>.replay`
//! (so rows spilled meanwhile start a new file), and that is removed once all of its rows
//! are in the database. A start finds either and writes their rows first; inserts skip
//! rows already present, so a replay cut short by a crash is simply done again.
//!
//! Files are small and only touched when the database fails, but the calls block: the
//! writer runs them on the blocking pool.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::SpendRow;

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

    /// Moves the spill file into `<file>.replay` (appending when a replay is still
    /// unfinished) and returns every row there. Lines that do not parse (the last one,
    /// after a crash in the middle of a write) are skipped and counted.
    pub fn take(&self) -> std::io::Result<(Vec<SpendRow>, usize)> {
        if self.path.exists() {
            if self.replay.exists() {
                let more = std::fs::read(&self.path)?;
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&self.replay)?;
                f.write_all(b"\n")?;
                f.write_all(&more)?;
                f.sync_all()?;
                std::fs::remove_file(&self.path)?;
            } else {
                std::fs::rename(&self.path, &self.replay)?;
            }
        }
        let f = match std::fs::File::open(&self.replay) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
            Err(e) => return Err(e),
        };
        let mut rows = Vec::new();
        let mut bad = 0;
        for line in std::io::BufReader::new(f).lines() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(&line) {
                Ok(row) => rows.push(row),
                Err(_) => bad += 1,
            }
        }
        Ok((rows, bad))
    }

    /// Every row taken by [`Spill::take`] is in the database.
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
            estimated: true,
            status: "ok".into(),
            latency_ms: 1,
            created_at_ms: 2,
        }
    }

    #[test]
    fn rows_survive_a_round_trip_and_a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().expect("dir");
        let spill = Spill::new(dir.path().join("sub/spill.jsonl"));
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
        let (rows, bad) = spill.take().expect("take");
        assert_eq!(rows, vec![row(1), row(2), row(3), row(6)]);
        assert_eq!(bad, 1);
        assert!(!spill.path().exists(), "the spill file moved to .replay");
        // Rows spilled during the replay start a new file and join the unfinished replay.
        spill.append(&[row(5)]).expect("append");
        let (rows, _) = spill.take().expect("take again");
        assert_eq!(rows.len(), 5, "the unfinished replay and the new row");
        spill.replayed().expect("done");
        assert_eq!(spill.count(), 0);
        assert_eq!(spill.take().expect("nothing").0, vec![]);
    }
}
