//! Reading input files whole, with a bound: only regular files (and pipes) are read, and no
//! more than a given number of bytes, so a directory, a device such as `/dev/zero` or an
//! endless pipe is refused instead of hanging or exhausting memory.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Why a file could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The path names a directory.
    Directory,
    /// The path names a device, a socket or another file that is not data.
    NotAFile,
    /// The file holds more than the bound (`len` when known).
    TooLarge {
        /// The file's length, when the file system knows it.
        len: Option<u64>,
        /// The bound.
        max: u64,
    },
    /// Any other I/O error.
    Io(io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Directory => f.write_str("it is a directory, not a file"),
            ReadError::NotAFile => f.write_str("it is not a regular file (a device or a socket)"),
            ReadError::TooLarge { len: Some(n), max } => write!(
                f,
                "it is {} long, more than the limit of {}",
                human_bytes(*n),
                human_bytes(*max)
            ),
            ReadError::TooLarge { len: None, max } => {
                write!(f, "it holds more than the limit of {}", human_bytes(*max))
            }
            ReadError::Io(e) => f.write_str(&io_reason(e)),
        }
    }
}

/// A user-facing reason for an I/O error (no OS error codes, lower case).
pub fn io_reason(e: &io::Error) -> String {
    if let Some(inner) = e.get_ref() {
        // An error made by convc itself already says what is wrong.
        return inner.to_string();
    }
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::IsADirectory => "it is a directory".into(),
        io::ErrorKind::NotADirectory => "a part of the path is not a directory".into(),
        io::ErrorKind::OutOfMemory => "out of memory".into(),
        io::ErrorKind::StorageFull => "no space left on the device".into(),
        io::ErrorKind::ReadOnlyFilesystem => "the file system is read-only".into(),
        _ => {
            let s = e.to_string();
            let s = match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            };
            let mut c = s.chars();
            match c.next() {
                Some(first) => first.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// `1.5 GiB`, `12 bytes`.
pub fn human_bytes(n: impl Into<u128>) -> String {
    let n: u128 = n.into();
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Reads the whole file at `path` (following symbolic links), refusing directories, devices and
/// sockets, and any file of more than `max` bytes (a regular file by its length, before reading;
/// a pipe after `max` bytes).
pub fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let meta = std::fs::metadata(path).map_err(ReadError::Io)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        return Err(ReadError::Directory);
    }
    if !ft.is_file() && !is_fifo(&ft) {
        return Err(ReadError::NotAFile);
    }
    if ft.is_file() && meta.len() > max {
        return Err(ReadError::TooLarge {
            len: Some(meta.len()),
            max,
        });
    }
    let file = File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::with_capacity(if ft.is_file() { meta.len() as usize } else { 0 });
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge { len: None, max });
    }
    Ok(bytes)
}

#[cfg(unix)]
fn is_fifo(ft: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    ft.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_ft: &std::fs::FileType) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_directories_devices_and_large_files() {
        let dir = std::env::temp_dir();
        assert!(matches!(
            read_limited(&dir, 1 << 20),
            Err(ReadError::Directory)
        ));
        let p = dir.join(format!("convc-read-test-{}", std::process::id()));
        #[cfg(unix)]
        {
            let sock = p.with_extension("sock");
            let _ = std::fs::remove_file(&sock);
            let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            assert!(matches!(
                read_limited(&sock, 1 << 20),
                Err(ReadError::NotAFile)
            ));
            drop(listener);
            let _ = std::fs::remove_file(&sock);
        }
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read_limited(&p, 10).unwrap(), b"0123456789");
        assert!(matches!(
            read_limited(&p, 9),
            Err(ReadError::TooLarge {
                len: Some(10),
                max: 9
            })
        ));
        let _ = std::fs::remove_file(&p);
        assert!(matches!(
            read_limited(&dir.join("no-such-file-convc"), 9),
            Err(ReadError::Io(e)) if io_reason(&e) == "no such file"
        ));
    }
}
