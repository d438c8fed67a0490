//! Atomic output files.

use convc_tensor::write::write_atomic;
use std::fs;

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn writes_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.npy");
    write_atomic(&path, b"hello").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"hello");
    assert_eq!(entries(dir.path()), ["out.npy"]);
}

#[test]
fn replaces_an_existing_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.png");
    fs::write(&path, vec![7u8; 10_000]).unwrap();
    write_atomic(&path, b"short").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"short");
    write_atomic(&path, &[]).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"");
    assert_eq!(entries(dir.path()), ["out.png"]);
}

#[test]
fn missing_directory_fails_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("out.npy");
    let e = write_atomic(&path, b"data").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_failed_rename_removes_the_temporary_and_keeps_the_target() {
    let dir = tempfile::tempdir().unwrap();
    // The target is a non-empty directory: the rename fails after the data was written.
    let target = dir.path().join("out.npy");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"x").unwrap();
    assert!(write_atomic(&target, b"data").is_err());
    assert_eq!(entries(dir.path()), ["out.npy"]);
    assert_eq!(entries(&target), ["keep"]);
}

#[test]
fn a_path_without_a_file_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let e = write_atomic(&dir.path().join(".."), b"x").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn concurrent_writers_never_leave_a_mixed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.bin");
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let path = &path;
            s.spawn(move || {
                for _ in 0..20 {
                    write_atomic(path, &vec![i; 50_000]).unwrap();
                }
            });
        }
    });
    let data = fs::read(&path).unwrap();
    assert_eq!(data.len(), 50_000);
    assert!(data.iter().all(|&b| b == data[0]));
    assert_eq!(entries(dir.path()), ["out.bin"]);
}
