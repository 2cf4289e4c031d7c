//! The SQLite file's life outside the database: a marker that tells a first start from a
//! deleted file, and a watch that notices the file being deleted or replaced while open.
//!
//! A deleted file that SQLite still has open keeps working, invisibly: every key, budget
//! and ledger row written from then on goes into an inode that disappears at the next
//! stop, and the next start would create an empty database. So:
//! - at start, a missing file whose marker (`<file>.created`) is present is an error, not a
//!   new database ([`StoreError::DatabaseMissing`]);
//! - while running, [`Store::check_file`] (called every key refresh) restores a deleted
//!   file from the open connection (`VACUUM INTO` its path, with writes held back so none
//!   is left behind), reopens the pool on it and reports it loudly;
//! - a file replaced by another one (a different inode at the path) is not overwritten:
//!   writes are refused from then on, so nothing is written where nobody will read it,
//!   and readiness fails until a restart opens the new file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Store, StoreError, connect_pool};

/// What [`Store::check_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// Not SQLite, or the file is where it was.
    Fine,
    /// The file had been deleted; it was written back from the open database.
    Restored,
    /// Another file is at the path: writes are refused until a restart.
    Replaced,
    /// The file is gone and could not be written back.
    Missing(String),
}

#[derive(Debug)]
pub(crate) struct DbFile {
    path: PathBuf,
    marker: PathBuf,
    /// The URL the pool was opened with, to reopen it on a restored file.
    url: Mutex<String>,
    /// (device, inode) of the file the pool has open.
    identity: Mutex<Option<(u64, u64)>>,
    replaced: AtomicBool,
}

impl DbFile {
    pub fn new(file: &str) -> DbFile {
        let path = PathBuf::from(file);
        let mut marker = path.clone().into_os_string();
        marker.push(".created");
        DbFile {
            path,
            marker: marker.into(),
            url: Mutex::default(),
            identity: Mutex::default(),
            replaced: AtomicBool::new(false),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the directory; refuses a missing file that has a marker.
    pub fn check_before_open(&self) -> Result<(), StoreError> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: self.path.display().to_string(),
                source,
            })?;
        }
        if !self.path.exists() && self.marker.exists() {
            return Err(StoreError::DatabaseMissing {
                path: self.path.display().to_string(),
                marker: self.marker.display().to_string(),
            });
        }
        Ok(())
    }

    /// The pool is open on the file: remember which file it is, and mark it.
    pub fn opened(&self, url: String) {
        *self.url.lock().unwrap_or_else(|p| p.into_inner()) = url;
        *self.identity.lock().unwrap_or_else(|p| p.into_inner()) = identity(&self.path);
        if !self.marker.exists() {
            let text = format!(
                "Sluice created its database {} here. While this file exists, a missing \
                 database file is an error at start instead of a new, empty database.\n",
                self.path.display()
            );
            if let Err(e) = std::fs::write(&self.marker, text) {
                tracing::warn!("cannot write {}: {e}", self.marker.display());
            }
        }
    }

    pub fn is_replaced(&self) -> bool {
        self.replaced.load(Ordering::Acquire)
    }

    fn known(&self) -> Option<(u64, u64)> {
        *self.identity.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

impl Store {
    /// Checks that the SQLite file is still the one open; restores a deleted one. Cheap (a
    /// `stat`) when nothing happened.
    pub async fn check_file(&self) -> FileCheck {
        let Some(file) = &self.inner.file else {
            return FileCheck::Fine;
        };
        if file.is_replaced() {
            return FileCheck::Replaced;
        }
        if self.pool().is_closed() && !self.closing() {
            // A restore that put the file back but could not reopen it: try again.
            let _all = self.inner.writes.write().await;
            return match self.reopen(file).await {
                Ok(()) => FileCheck::Restored,
                Err(e) => {
                    tracing::error!(path = %file.path.display(), "cannot reopen the database file: {e}");
                    FileCheck::Missing(e.to_string())
                }
            };
        }
        let now = identity(&file.path);
        if now.is_some() && now == file.known() {
            return FileCheck::Fine;
        }
        // Hold every write back while looking closer and, if need be, copying.
        let _all = self.inner.writes.write().await;
        match identity(&file.path) {
            Some(id) if Some(id) == file.known() => FileCheck::Fine,
            Some(_) => {
                file.replaced.store(true, Ordering::Release);
                tracing::error!(
                    path = %file.path.display(),
                    "the database file was replaced by another file while open; writes are \
                     refused until a restart opens the new one"
                );
                FileCheck::Replaced
            }
            None => match self.restore(file).await {
                Ok(()) => {
                    tracing::error!(
                        path = %file.path.display(),
                        "the database file was deleted while the gateway had it open; it was \
                         written back from the open database and the gateway goes on with it. \
                         Find out what deleted it"
                    );
                    FileCheck::Restored
                }
                Err(e) => {
                    tracing::error!(
                        path = %file.path.display(),
                        "the database file was deleted while the gateway had it open, and \
                         could not be written back: {e}"
                    );
                    FileCheck::Missing(e.to_string())
                }
            },
        }
    }

    /// Writes the open database to its path and moves the pool onto that file. The caller
    /// holds every write back.
    ///
    /// The copy is made beside the path and renamed into place only after the old pool
    /// has closed: closing checkpoints and removes the old database's `-wal` and `-shm`
    /// files, which are still at the path's names and must not be read as the new file's.
    /// Reads in that short gap fail and are retried by their callers.
    async fn restore(&self, file: &crate::file::DbFile) -> Result<(), StoreError> {
        file.check_before_open().or_else(|e| match e {
            // The marker is there by design: the file is what we are putting back.
            StoreError::DatabaseMissing { .. } => Ok(()),
            e => Err(e),
        })?;
        let old = self.pool();
        let mut copy = file.path.clone().into_os_string();
        copy.push(".restoring");
        let copy = std::path::PathBuf::from(copy);
        let _ = std::fs::remove_file(&copy);
        sqlx::query("VACUUM INTO $1")
            .bind(copy.display().to_string())
            .execute(&*old)
            .await?;
        old.close().await;
        std::fs::rename(&copy, &file.path).map_err(|source| StoreError::Restore {
            path: format!("{} (the copy is {})", file.path.display(), copy.display()),
            source,
        })?;
        // The file at the path is ours from here on, even if reopening it fails (the next
        // check tries again).
        *file.identity.lock().unwrap_or_else(|p| p.into_inner()) = identity(&file.path);
        self.reopen(file).await
    }

    /// Opens a fresh pool on the file and marks it (the marker may have gone with the
    /// directory).
    async fn reopen(&self, file: &crate::file::DbFile) -> Result<(), StoreError> {
        let url = file.url.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let pool = connect_pool(self.inner.backend, &url).await?;
        self.inner.pool.store(std::sync::Arc::new(pool));
        file.opened(url);
        Ok(())
    }
}
