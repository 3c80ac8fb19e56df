//! The input manifest: which files, in which order, of what size and content.
//!
//! **What the fingerprint reads.** BLAKE3 over the file's size (`u64` LE) and a fixed set
//! of regions: the first MiB, the last MiB and 64 blocks of 4 KiB spread evenly in between
//! (files up to 2.25 MiB are hashed whole). That is at most 2.25 MiB read per file
//! whatever its size, so checking the input on every rerun costs milliseconds, not a
//! pass over 10 GB (`docs/RUN.md` has the measurement). It catches what happens to batch
//! inputs in practice: a file replaced, regenerated, appended to, truncated, edited near
//! either end, or the files given in another order. It does not promise to catch an edit
//! that keeps the size and touches none of the sampled bytes (a one-byte change in the
//! middle of a large file): the manifest is a guard against mistakes, not a proof of
//! content (the lineage hash chain is that, for the outputs).
//!
//! An appended file is told apart from an edited one by fingerprinting its first
//! `old size` bytes with the regions of the old size: equal means the old bytes are
//! still there (as far as the samples tell) and only new ones were added.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::store::StoredFile;

/// Bytes hashed at each end of a file.
const END_BYTES: u64 = 1 << 20;
/// Blocks sampled between the ends, and their size.
const SAMPLES: u64 = 64;
const SAMPLE_BYTES: u64 = 4096;

/// The fingerprint of the first `size` bytes of `file` (see the module docs).
pub(crate) fn fingerprint(file: &mut File, size: u64) -> io::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    h.update(b"resumable input fingerprint v1");
    h.update(&size.to_le_bytes());
    let mut buf = vec![0u8; 64 << 10];
    let mut region = |file: &mut File, start: u64, len: u64| -> io::Result<()> {
        file.seek(SeekFrom::Start(start))?;
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..n])?;
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    };
    if size <= 2 * END_BYTES + SAMPLES * SAMPLE_BYTES {
        region(file, 0, size)?;
    } else {
        region(file, 0, END_BYTES)?;
        let span = size - 2 * END_BYTES - SAMPLE_BYTES;
        for k in 0..SAMPLES {
            region(file, END_BYTES + span * k / (SAMPLES - 1), SAMPLE_BYTES)?;
        }
        region(file, size - END_BYTES, END_BYTES)?;
    }
    Ok(*h.finalize().as_bytes())
}

/// The canonical form of an input path, refusing what cannot be resumed.
pub(crate) fn check_path(path: &Path) -> crate::Result<(PathBuf, u64)> {
    if path.as_os_str() == "-" {
        return Err(crate::Error::InvalidArgument(
            "standard input cannot be an input: a rerun could not read it again from where it stopped; save it to a file and name the file".into(),
        ));
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            crate::Error::InvalidArgument(format!("input {} does not exist", path.display()))
        } else {
            crate::Error::Io(io::Error::new(
                e.kind(),
                format!("cannot read input {}: {e}", path.display()),
            ))
        }
    })?;
    if !meta.is_file() {
        return Err(crate::Error::InvalidArgument(format!(
            "input {} is not a regular file (a pipe, FIFO, device or directory cannot be resumed: a rerun could not read it again); save it to a file and name the file",
            path.display()
        )));
    }
    let canonical = std::fs::canonicalize(path)?;
    Ok((canonical, meta.len()))
}

/// How the input differs from what the job recorded, naming the file.
#[derive(Debug)]
pub(crate) struct Change {
    /// What the job recorded.
    pub expected: String,
    /// What is there now.
    pub found: String,
}

/// Compares the current input files (given paths, in order) with the recorded ones.
pub(crate) fn compare(stored: &[StoredFile], paths: &[PathBuf]) -> crate::Result<Option<Change>> {
    // Missing files first: the most common and the clearest.
    let mut current = Vec::with_capacity(paths.len());
    for p in paths {
        match std::fs::canonicalize(p) {
            Ok(c) => current.push(c.to_string_lossy().into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
                let abs = abs.to_string_lossy().into_owned();
                let was = stored.iter().any(|f| f.path == abs);
                return Ok(Some(Change {
                    expected: format!("{abs} (an input file)"),
                    found: format!(
                        "{abs} missing{}",
                        if was {
                            ""
                        } else {
                            " (and it was not an input)"
                        }
                    ),
                }));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for s in stored {
        if !current.contains(&s.path) && !Path::new(&s.path).exists() {
            return Ok(Some(Change {
                expected: format!("{} (an input file)", s.path),
                found: format!("{} missing and no longer named as an input", s.path),
            }));
        }
    }
    let stored_paths: Vec<&str> = stored.iter().map(|f| f.path.as_str()).collect();
    if current != stored_paths {
        let mut a: Vec<&str> = current.iter().map(String::as_str).collect();
        let mut b = stored_paths.clone();
        a.sort_unstable();
        b.sort_unstable();
        let list = |v: &[&str]| v.join(", ");
        let stored_list = list(&stored_paths);
        let current_list = list(&current.iter().map(String::as_str).collect::<Vec<_>>());
        if a == b {
            let i = current
                .iter()
                .zip(&stored_paths)
                .position(|(c, s)| c != s)
                .unwrap_or(0);
            return Ok(Some(Change {
                expected: format!("the files in the order {stored_list}"),
                found: format!(
                    "them reordered: {} is now input {} (it was input {})",
                    current[i],
                    i + 1,
                    stored_paths
                        .iter()
                        .position(|s| *s == current[i])
                        .map_or(0, |p| p + 1)
                ),
            }));
        }
        return Ok(Some(Change {
            expected: format!("the files {stored_list}"),
            found: format!("the files {current_list}"),
        }));
    }
    for s in stored {
        let mut file = File::open(&s.path)?;
        let size = file.metadata()?.len();
        let change = if size < s.size {
            Some(format!("{} truncated: now {size} bytes", s.path))
        } else if fingerprint(&mut file, s.size)? != s.fingerprint {
            let moved = stored
                .iter()
                .find(|o| o.path != s.path && o.size == size)
                .filter(|o| fingerprint(&mut file, size).is_ok_and(|fp| fp == o.fingerprint));
            Some(match moved {
                Some(o) => format!(
                    "{} holding what {} held: the files were reordered",
                    s.path, o.path
                ),
                None => format!("{} edited: its content changed ({size} bytes now)", s.path),
            })
        } else if size > s.size {
            Some(format!(
                "{} appended to: now {size} bytes, {} more",
                s.path,
                size - s.size
            ))
        } else {
            None
        };
        if let Some(found) = change {
            return Ok(Some(Change {
                expected: format!("{} of {} bytes", s.path, s.size),
                found,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(bytes: &[u8], size: u64) -> [u8; 32] {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, bytes).unwrap();
        fingerprint(&mut File::open(&p).unwrap(), size).unwrap()
    }

    #[test]
    fn fingerprint_sees_ends_and_size_and_prefixes_match_for_appends() {
        let big: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();
        let n = big.len() as u64;
        let base = fp(&big, n);
        let mut appended = big.clone();
        appended.extend_from_slice(b"more\n");
        assert_eq!(
            fp(&appended, n),
            base,
            "the old prefix fingerprints the same"
        );
        assert_ne!(fp(&appended, n + 5), base);
        let mut edited = big.clone();
        edited[10] ^= 1;
        assert_ne!(fp(&edited, n), base);
        let mut tail = big.clone();
        tail[(n - 3) as usize] ^= 1;
        assert_ne!(fp(&tail, n), base);
        assert_ne!(fp(b"abc", 3), fp(b"abd", 3));
    }
}
