//! Following one growing file line by line, through rotation and truncation, from a checkpoint.
//!
//! The tailer hands out complete lines (a last line without its newline waits for it) in
//! batches, each with the checkpoint to store once every line of the batch is stored. It never
//! moves past a line by itself: the caller [`Tailer::commit`]s the checkpoint after the broker
//! acknowledged the batch, or calls [`Tailer::reset`] after a failure, and the next poll reopens
//! the file at the last committed checkpoint.
//!
//! A file is the same file as the checkpoint's when its device, inode and the SHA-256 of its first
//! line all match (an inode number can be reused by a new file; a first line cannot be rewritten
//! without the file being replaced or truncated). Then:
//! - opening: the same file at the path resumes at the checkpoint offset; a file at the path
//!   that is shorter than the offset (truncated) or another file is read from 0; when the path
//!   holds another file, the checkpoint's file is looked for beside it (`Master.csv.1` after
//!   logrotate) and its rest is read first;
//! - while reading: a file that became shorter than what was read, or whose first line changed,
//!   was truncated (logrotate `copytruncate`) and is read again from 0; when the path names
//!   another file (rotated by rename) the open file is read to its end first (a last line without
//!   newline gets a few polls to be finished, then is handed out marked incomplete, never dropped),
//!   then the new file is read from 0.
//!
//! Lines are split at `\n` only. A line longer than the line limit (a file that is not a CDR log)
//! is handed out in pieces of the limit, marked incomplete.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use omni_proto::v1::CallLogCheckpoint;
use sha2::{Digest, Sha256};

/// Longest line handed out whole; `cdr_csv` writes at most 1024 bytes per line.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most lines per batch.
pub const MAX_BATCH_LINES: usize = 1000;
/// Polls a rotated file's unfinished last line is given to be finished before it is handed out.
pub const ROTATION_GRACE_POLLS: u32 = 3;

const CHUNK: usize = 64 * 1024;

/// A file's identity on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    /// Device number.
    pub device: u64,
    /// Inode number.
    pub inode: u64,
}

impl FileId {
    fn of(metadata: &std::fs::Metadata) -> FileId {
        FileId {
            device: metadata.dev(),
            inode: metadata.ino(),
        }
    }
}

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// Its exact bytes, with the newline when complete.
    pub bytes: Vec<u8>,
    /// `false`: no newline ended it (a rotated file's unfinished last line, or a piece of a line
    /// over the limit).
    pub complete: bool,
}

/// Lines to store, and the checkpoint to store after them.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The file they were read from (the configured path, or a rotated file beside it).
    pub path: PathBuf,
    /// The lines, in file order.
    pub lines: Vec<Line>,
    /// The checkpoint once every line is stored (`updated_at` left for the caller).
    pub checkpoint: CallLogCheckpoint,
}

/// What a poll found.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Lines to store; poll again right after storing them.
    Lines(Batch),
    /// Nothing new; poll again later.
    Idle,
    /// No file at the path (and no rotated file to finish); poll again later.
    Missing,
}

/// Something worth a log line and a metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A file was opened at an offset.
    Opened {
        /// The file.
        path: PathBuf,
        /// Where reading starts.
        offset: u64,
        /// Why there: `checkpoint`, `new file`, `replaced` or `truncated`.
        reason: &'static str,
    },
    /// The path names another file now; the old one was read to its end.
    Rotated {
        /// The path.
        path: PathBuf,
    },
    /// The open file became shorter or its first line changed: read again from 0.
    Truncated {
        /// The file.
        path: PathBuf,
    },
}

struct Source {
    file: File,
    path: PathBuf,
    id: FileId,
    first_line: Option<[u8; 32]>,
    /// The offset of the first byte not handed out yet.
    next: u64,
    /// Polls that found the path naming another file while this one ended in an unfinished line.
    rotated_polls: u32,
}

/// Follows the file at one path.
pub struct Tailer {
    path: PathBuf,
    committed: CallLogCheckpoint,
    source: Option<Source>,
    notices: Vec<Notice>,
    max_line_bytes: usize,
    max_batch_lines: usize,
    rotation_grace_polls: u32,
}

impl Tailer {
    /// A tailer of `path` that resumes at `checkpoint` (the default: from the start).
    pub fn new(path: impl Into<PathBuf>, checkpoint: CallLogCheckpoint) -> Tailer {
        Tailer {
            path: path.into(),
            committed: checkpoint,
            source: None,
            notices: Vec::new(),
            max_line_bytes: MAX_LINE_BYTES,
            max_batch_lines: MAX_BATCH_LINES,
            rotation_grace_polls: ROTATION_GRACE_POLLS,
        }
    }

    /// Sets the limits (tests use small ones).
    pub fn with_limits(mut self, max_line_bytes: usize, max_batch_lines: usize, rotation_grace_polls: u32) -> Tailer {
        self.max_line_bytes = max_line_bytes.max(1);
        self.max_batch_lines = max_batch_lines.max(1);
        self.rotation_grace_polls = rotation_grace_polls;
        self
    }

    /// The configured path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The last committed checkpoint.
    pub fn committed(&self) -> &CallLogCheckpoint {
        &self.committed
    }

    /// Records that a batch is stored: a reopen resumes after it.
    pub fn commit(&mut self, checkpoint: CallLogCheckpoint) {
        self.committed = checkpoint;
    }

    /// Forgets what was handed out and not committed: the next poll reopens at the checkpoint.
    pub fn reset(&mut self) {
        self.source = None;
    }

    /// What happened since the last call.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        std::mem::take(&mut self.notices)
    }

    /// Looks for new lines.
    pub fn poll(&mut self) -> io::Result<Step> {
        if self.source.is_none() {
            match self.open()? {
                Some(source) => self.source = Some(source),
                None => return Ok(Step::Missing),
            }
        }
        // At most two rounds: the second one reads the new file right after a rotation.
        for _ in 0..2 {
            self.check_truncation()?;
            let read = self.read()?;
            if !read.lines.is_empty() {
                return Ok(Step::Lines(self.batch(read.lines)));
            }
            let source = self.source.as_mut().expect("opened above");
            let at_path = match std::fs::metadata(&self.path) {
                Ok(metadata) => FileId::of(&metadata),
                // Moved away and no new file yet: keep reading the old one, it may still grow.
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Step::Idle),
                Err(error) => return Err(error),
            };
            if at_path == source.id {
                source.rotated_polls = 0;
                return Ok(Step::Idle);
            }
            // Rotated. Read once more: a writer may have appended between the read and the look.
            let read = self.read()?;
            if !read.lines.is_empty() {
                return Ok(Step::Lines(self.batch(read.lines)));
            }
            let source = self.source.as_mut().expect("opened above");
            if !read.partial.is_empty() {
                if source.rotated_polls < self.rotation_grace_polls {
                    source.rotated_polls += 1;
                    return Ok(Step::Idle);
                }
                let line = Line {
                    offset: source.next,
                    bytes: read.partial,
                    complete: false,
                };
                return Ok(Step::Lines(self.batch(vec![line])));
            }
            self.notices.push(Notice::Rotated { path: self.path.clone() });
            match open_existing(&self.path)? {
                Some(file) => {
                    self.source = Some(Source::new(file, self.path.clone(), None, 0)?);
                    self.notices.push(Notice::Opened {
                        path: self.path.clone(),
                        offset: 0,
                        reason: "new file",
                    });
                }
                None => return Ok(Step::Idle),
            }
        }
        Ok(Step::Idle)
    }

    /// Opens the file to read next, at the committed checkpoint when it is still there.
    fn open(&mut self) -> io::Result<Option<Source>> {
        let checkpoint = self.committed.clone();
        let at_path = open_existing(&self.path)?;
        if checkpoint.offset > 0 {
            let want = FileId {
                device: checkpoint.device,
                inode: checkpoint.inode,
            };
            let hash: Option<[u8; 32]> = checkpoint.first_line_sha256.as_slice().try_into().ok();
            if let Some(file) = &at_path
                && is_file(file, want, hash, self.max_line_bytes)?
            {
                let file = file.try_clone()?;
                if file.metadata()?.len() >= checkpoint.offset {
                    return Ok(Some(self.opened(file, self.path.clone(), hash, checkpoint.offset, "checkpoint")?));
                }
                return Ok(Some(self.opened(file, self.path.clone(), None, 0, "truncated")?));
            }
            if let Some((file, path)) = find_beside(&self.path, want, hash, checkpoint.offset, self.max_line_bytes)? {
                return Ok(Some(self.opened(file, path, hash, checkpoint.offset, "checkpoint")?));
            }
            if let Some(file) = at_path {
                return Ok(Some(self.opened(file, self.path.clone(), None, 0, "replaced")?));
            }
            return Ok(None);
        }
        match at_path {
            Some(file) => Ok(Some(self.opened(file, self.path.clone(), None, 0, "new file")?)),
            None => Ok(None),
        }
    }

    fn opened(&mut self, file: File, path: PathBuf, first_line: Option<[u8; 32]>, offset: u64, reason: &'static str) -> io::Result<Source> {
        self.notices.push(Notice::Opened {
            path: path.clone(),
            offset,
            reason,
        });
        Source::new(file, path, first_line, offset)
    }

    /// Starts the open file over when it became shorter or its first line changed.
    fn check_truncation(&mut self) -> io::Result<()> {
        let max_line_bytes = self.max_line_bytes;
        let source = self.source.as_mut().expect("opened");
        let len = source.file.metadata()?.len();
        let rewritten = match source.first_line {
            Some(known) => first_line_hash(&source.file, max_line_bytes)? != Some(known),
            None => false,
        };
        if len < source.next || rewritten {
            source.next = 0;
            source.first_line = None;
            source.rotated_polls = 0;
            self.notices.push(Notice::Truncated { path: source.path.clone() });
        }
        Ok(())
    }

    fn read(&self) -> io::Result<Read> {
        let source = self.source.as_ref().expect("opened");
        read_lines(&source.file, source.next, self.max_batch_lines, self.max_line_bytes)
    }

    /// Hands out `lines`: moves past them and builds the checkpoint after them.
    fn batch(&mut self, lines: Vec<Line>) -> Batch {
        let source = self.source.as_mut().expect("opened");
        if source.first_line.is_none()
            && let Some(first) = lines.first().filter(|l| l.offset == 0 && l.complete)
        {
            source.first_line = Some(Sha256::digest(&first.bytes).into());
        }
        let last = lines.last().expect("a batch has lines");
        source.next = last.offset + last.bytes.len() as u64;
        source.rotated_polls = 0;
        Batch {
            path: source.path.clone(),
            checkpoint: CallLogCheckpoint {
                device: source.id.device,
                inode: source.id.inode,
                first_line_sha256: source.first_line.map(|h| h.to_vec()).unwrap_or_default(),
                offset: source.next,
                path: source.path.display().to_string(),
                updated_at: None,
            },
            lines,
        }
    }
}

impl Source {
    fn new(file: File, path: PathBuf, first_line: Option<[u8; 32]>, next: u64) -> io::Result<Source> {
        let id = FileId::of(&file.metadata()?);
        Ok(Source {
            file,
            path,
            id,
            first_line,
            next,
            rotated_polls: 0,
        })
    }
}

fn open_existing(path: &Path) -> io::Result<Option<File>> {
    match File::open(path) {
        Ok(file) => Ok(Some(file)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// Whether `file` is the file with this identity and first line.
fn is_file(file: &File, want: FileId, first_line: Option<[u8; 32]>, max_line_bytes: usize) -> io::Result<bool> {
    if FileId::of(&file.metadata()?) != want {
        return Ok(false);
    }
    Ok(first_line.is_some() && first_line_hash(file, max_line_bytes)? == first_line)
}

/// The checkpoint's file in the directory of `path` under another name (rotated), when it is
/// there and at least `offset` long.
fn find_beside(
    path: &Path,
    want: FileId,
    first_line: Option<[u8; 32]>,
    offset: u64,
    max_line_bytes: usize,
) -> io::Result<Option<(File, PathBuf)>> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let Ok(metadata) = entry.metadata() else { continue };
        if !metadata.is_file() || FileId::of(&metadata) != want || metadata.len() < offset {
            continue;
        }
        let candidate = entry.path();
        if let Some(file) = open_existing(&candidate)?
            && is_file(&file, want, first_line, max_line_bytes)?
        {
            return Ok(Some((file, candidate)));
        }
    }
    Ok(None)
}

/// SHA-256 of the file's first line with its newline; `None` when it has no complete first line.
fn first_line_hash(file: &File, max_line_bytes: usize) -> io::Result<Option<[u8; 32]>> {
    let mut line = Vec::new();
    let mut chunk = [0_u8; 4096];
    while line.len() < max_line_bytes {
        let n = file.read_at(&mut chunk, line.len() as u64)?;
        if n == 0 {
            return Ok(None);
        }
        if let Some(end) = chunk[..n].iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&chunk[..=end]);
            return Ok(Some(Sha256::digest(&line).into()));
        }
        line.extend_from_slice(&chunk[..n]);
    }
    Ok(None)
}

struct Read {
    lines: Vec<Line>,
    /// At the end of the file: the bytes after the last line (an unfinished line).
    partial: Vec<u8>,
}

/// Reads complete lines from `from`, at most `max_lines`.
fn read_lines(file: &File, from: u64, max_lines: usize, max_line_bytes: usize) -> io::Result<Read> {
    let mut lines = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut pending_offset = from;
    let mut chunk = vec![0_u8; CHUNK];
    let mut at_end = false;
    let mut in_overlong = false;
    while lines.len() < max_lines {
        let n = file.read_at(&mut chunk, pending_offset + pending.len() as u64)?;
        if n == 0 {
            at_end = true;
            break;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while lines.len() < max_lines {
            match pending[start..].iter().position(|b| *b == b'\n') {
                Some(index) if index < max_line_bytes => {
                    let end = start + index + 1;
                    lines.push(Line {
                        offset: pending_offset + start as u64,
                        bytes: pending[start..end].to_vec(),
                        // The last piece of an overlong line is no line either.
                        complete: !in_overlong,
                    });
                    in_overlong = false;
                    start = end;
                }
                _ if pending.len() - start >= max_line_bytes => {
                    let end = start + max_line_bytes;
                    lines.push(Line {
                        offset: pending_offset + start as u64,
                        bytes: pending[start..end].to_vec(),
                        complete: false,
                    });
                    in_overlong = true;
                    start = end;
                }
                _ => break,
            }
        }
        pending.drain(..start);
        pending_offset += start as u64;
    }
    Ok(Read {
        lines,
        partial: if at_end { pending } else { Vec::new() },
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Dir {
            Dir {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn append(&self, name: &str, text: &str) {
            let mut file = std::fs::OpenOptions::new().create(true).append(true).open(self.path(name)).unwrap();
            file.write_all(text.as_bytes()).unwrap();
        }

        fn master(&self) -> PathBuf {
            self.path("Master.csv")
        }
    }

    fn tailer(dir: &Dir, checkpoint: CallLogCheckpoint) -> Tailer {
        Tailer::new(dir.master(), checkpoint).with_limits(1024, 100, 2)
    }

    /// Polls until idle, committing every batch; the lines read, as text.
    fn drain(tailer: &mut Tailer) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..100 {
            match tailer.poll().unwrap() {
                Step::Lines(batch) => {
                    out.extend(batch.lines.iter().map(|l| String::from_utf8(l.bytes.clone()).unwrap()));
                    tailer.commit(batch.checkpoint);
                }
                Step::Idle | Step::Missing => return out,
            }
        }
        panic!("never idle");
    }

    #[test]
    fn complete_lines_only_and_a_partial_line_waits_for_its_newline() {
        let dir = Dir::new();
        dir.append("Master.csv", "\"a\",1\n\"b\",2\n\"c\",");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        let Step::Lines(batch) = tailer.poll().unwrap() else {
            panic!("lines expected")
        };
        assert_eq!(
            batch.lines,
            [
                Line {
                    offset: 0,
                    bytes: b"\"a\",1\n".to_vec(),
                    complete: true
                },
                Line {
                    offset: 6,
                    bytes: b"\"b\",2\n".to_vec(),
                    complete: true
                },
            ]
        );
        assert_eq!(batch.checkpoint.offset, 12);
        assert_eq!(batch.checkpoint.first_line_sha256, Sha256::digest(b"\"a\",1\n").to_vec());
        let metadata = std::fs::metadata(dir.master()).unwrap();
        assert_eq!((batch.checkpoint.device, batch.checkpoint.inode), (metadata.dev(), metadata.ino()));
        tailer.commit(batch.checkpoint);
        assert_eq!(tailer.poll().unwrap(), Step::Idle, "the partial line waits");
        assert_eq!(tailer.poll().unwrap(), Step::Idle);
        dir.append("Master.csv", "3\n\"d\",4\n");
        let Step::Lines(batch) = tailer.poll().unwrap() else {
            panic!("lines expected")
        };
        assert_eq!(batch.lines[0].offset, 12);
        assert_eq!(batch.lines[0].bytes, b"\"c\",3\n");
        assert_eq!(batch.lines.len(), 2);
        assert_eq!(batch.checkpoint.offset, 24);
    }

    #[test]
    fn a_restart_resumes_at_the_checkpoint_and_uncommitted_lines_come_again() {
        let dir = Dir::new();
        dir.append("Master.csv", "one\ntwo\n");
        let mut first = tailer(&dir, CallLogCheckpoint::default());
        assert_eq!(drain(&mut first), ["one\n", "two\n"]);
        let checkpoint = first.committed().clone();
        dir.append("Master.csv", "three\n");
        // Handed out, not committed (the broker did not acknowledge), then reset: read again.
        assert!(matches!(first.poll().unwrap(), Step::Lines(_)));
        first.reset();
        assert_eq!(drain(&mut first), ["three\n"]);
        // A new process from the stored checkpoint.
        let mut second = tailer(&dir, checkpoint);
        assert_eq!(drain(&mut second), ["three\n"]);
        assert!(matches!(
            second.take_notices()[0],
            Notice::Opened {
                offset: 8,
                reason: "checkpoint",
                ..
            }
        ));
    }

    #[test]
    fn a_missing_file_is_waited_for() {
        let dir = Dir::new();
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        assert_eq!(tailer.poll().unwrap(), Step::Missing);
        dir.append("Master.csv", "first\n");
        assert_eq!(drain(&mut tailer), ["first\n"]);
    }

    #[test]
    fn truncation_while_open_starts_over() {
        let dir = Dir::new();
        dir.append("Master.csv", "one\ntwo\nthree\n");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        assert_eq!(drain(&mut tailer).len(), 3);
        tailer.take_notices();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.master())
            .unwrap()
            .set_len(0)
            .unwrap();
        dir.append("Master.csv", "four\n");
        assert_eq!(drain(&mut tailer), ["four\n"]);
        assert_eq!(tailer.take_notices(), [Notice::Truncated { path: dir.master() }]);
        assert_eq!(tailer.committed().offset, 5);
    }

    #[test]
    fn a_copytruncated_file_that_grew_past_the_offset_is_noticed_by_its_first_line() {
        let dir = Dir::new();
        dir.append("Master.csv", "one\ntwo\n");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        drain(&mut tailer);
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.master())
            .unwrap()
            .set_len(0)
            .unwrap();
        dir.append("Master.csv", "alpha\nbeta\ngamma\n");
        assert_eq!(drain(&mut tailer), ["alpha\n", "beta\n", "gamma\n"]);
        // The same while the connector was down: same inode, another first line.
        let checkpoint = tailer.committed().clone();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.master())
            .unwrap()
            .set_len(0)
            .unwrap();
        dir.append("Master.csv", "delta\nepsilon\nzeta\neta\n");
        let mut restarted = self::tailer(&dir, checkpoint);
        assert_eq!(drain(&mut restarted), ["delta\n", "epsilon\n", "zeta\n", "eta\n"]);
        assert!(matches!(
            restarted.take_notices()[0],
            Notice::Opened {
                offset: 0,
                reason: "replaced",
                ..
            }
        ));
    }

    #[test]
    fn a_file_shorter_than_the_checkpoint_is_read_from_the_start() {
        let dir = Dir::new();
        dir.append("Master.csv", "one\ntwo\nthree\n");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        drain(&mut tailer);
        let checkpoint = tailer.committed().clone();
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.master())
            .unwrap()
            .set_len(4)
            .unwrap();
        let mut restarted = self::tailer(&dir, checkpoint);
        assert_eq!(drain(&mut restarted), ["one\n"]);
    }

    #[test]
    fn rotation_reads_the_rest_of_the_old_file_then_the_new_one_from_the_start() {
        let dir = Dir::new();
        dir.append("Master.csv", "old-1\n");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        assert_eq!(drain(&mut tailer), ["old-1\n"]);
        // Written after our last read, then rotated away by rename; no new file yet.
        dir.append("Master.csv", "old-2\nold-3\n");
        std::fs::rename(dir.master(), dir.path("Master.csv.1")).unwrap();
        assert_eq!(drain(&mut tailer), ["old-2\n", "old-3\n"]);
        assert_eq!(tailer.poll().unwrap(), Step::Idle, "waiting for the new file");
        dir.append("Master.csv", "new-1\n");
        assert_eq!(drain(&mut tailer), ["new-1\n"]);
        assert!(tailer.take_notices().contains(&Notice::Rotated { path: dir.master() }));
        assert_eq!(tailer.committed().offset, 6);
        assert_eq!(tailer.committed().path, dir.master().display().to_string());
        // Rotated between two polls with lines in both files: the old file's come first.
        dir.append("Master.csv", "new-2\n");
        std::fs::rename(dir.master(), dir.path("Master.csv.2")).unwrap();
        dir.append("Master.csv", "newer-1\n");
        assert_eq!(drain(&mut tailer), ["new-2\n", "newer-1\n"]);
    }

    #[test]
    fn an_unfinished_last_line_of_a_rotated_file_is_handed_out_incomplete_after_a_grace() {
        let dir = Dir::new();
        dir.append("Master.csv", "old-1\nold-2-cut");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        assert_eq!(drain(&mut tailer), ["old-1\n"]);
        std::fs::rename(dir.master(), dir.path("Master.csv.1")).unwrap();
        dir.append("Master.csv", "new-1\n");
        assert_eq!(tailer.poll().unwrap(), Step::Idle, "grace poll 1");
        assert_eq!(tailer.poll().unwrap(), Step::Idle, "grace poll 2");
        let Step::Lines(batch) = tailer.poll().unwrap() else {
            panic!("the cut line")
        };
        assert_eq!(
            batch.lines,
            [Line {
                offset: 6,
                bytes: b"old-2-cut".to_vec(),
                complete: false
            }]
        );
        tailer.commit(batch.checkpoint);
        assert_eq!(drain(&mut tailer), ["new-1\n"]);
    }

    #[test]
    fn a_rotated_line_finished_within_the_grace_is_handed_out_whole() {
        let dir = Dir::new();
        dir.append("Master.csv", "old-1\nold-2-");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        drain(&mut tailer);
        std::fs::rename(dir.master(), dir.path("Master.csv.1")).unwrap();
        dir.append("Master.csv", "new-1\n");
        assert_eq!(tailer.poll().unwrap(), Step::Idle);
        dir.append("Master.csv.1", "finished\n");
        assert_eq!(drain(&mut tailer), ["old-2-finished\n", "new-1\n"]);
    }

    #[test]
    fn a_restart_after_a_rotation_finishes_the_rotated_file_first() {
        let dir = Dir::new();
        dir.append("Master.csv", "old-1\n");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        drain(&mut tailer);
        let checkpoint = tailer.committed().clone();
        drop(tailer);
        // While the connector is down: one more call, rotation, a call in the new file.
        dir.append("Master.csv", "old-2\n");
        std::fs::rename(dir.master(), dir.path("Master.csv.1")).unwrap();
        dir.append("Master.csv", "new-1\n");
        let mut restarted = self::tailer(&dir, checkpoint.clone());
        assert_eq!(drain(&mut restarted), ["old-2\n", "new-1\n"]);
        let notices = restarted.take_notices();
        assert_eq!(
            notices[0],
            Notice::Opened {
                path: dir.path("Master.csv.1"),
                offset: 6,
                reason: "checkpoint"
            }
        );
        // Once the rotated file is gone (compressed), a restart at the old checkpoint reads the
        // new file from its start.
        std::fs::remove_file(dir.path("Master.csv.1")).unwrap();
        let mut stale = self::tailer(&dir, checkpoint);
        assert_eq!(drain(&mut stale), ["new-1\n"]);
        assert!(matches!(
            stale.take_notices()[0],
            Notice::Opened {
                offset: 0,
                reason: "replaced",
                ..
            }
        ));
    }

    #[test]
    fn a_replaced_file_is_read_from_the_start_even_when_its_inode_is_reused() {
        let dir = Dir::new();
        dir.append("Master.csv", "one\ntwo\n");
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        drain(&mut tailer);
        let mut checkpoint = tailer.committed().clone();
        // Same device and inode, another first line (an inode reused after deletion).
        std::fs::remove_file(dir.master()).unwrap();
        dir.append("Master.csv", "uno\ndos\ntres\n");
        let metadata = std::fs::metadata(dir.master()).unwrap();
        checkpoint.inode = metadata.ino();
        checkpoint.device = metadata.dev();
        let mut restarted = self::tailer(&dir, checkpoint);
        assert_eq!(drain(&mut restarted), ["uno\n", "dos\n", "tres\n"]);
    }

    #[test]
    fn overlong_lines_come_in_pieces_and_batches_are_bounded() {
        let dir = Dir::new();
        let long = "x".repeat(2500);
        dir.append("Master.csv", &format!("{long}\nshort\n"));
        let mut tailer = tailer(&dir, CallLogCheckpoint::default());
        let Step::Lines(batch) = tailer.poll().unwrap() else { panic!() };
        let shape: Vec<(u64, usize, bool)> = batch.lines.iter().map(|l| (l.offset, l.bytes.len(), l.complete)).collect();
        assert_eq!(shape, [(0, 1024, false), (1024, 1024, false), (2048, 453, false), (2501, 6, true)]);
        let dir = Dir::new();
        dir.append("Master.csv", &"l\n".repeat(250));
        let mut tailer = self::tailer(&dir, CallLogCheckpoint::default());
        let Step::Lines(batch) = tailer.poll().unwrap() else { panic!() };
        assert_eq!(batch.lines.len(), 100);
        assert_eq!(drain(&mut tailer).len(), 150, "the rest, in two more batches");
    }
}
