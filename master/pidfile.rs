//! The pid file: written once the workers serve, read by `-s` and by a second master that must
//! refuse to start, removed on a clean stop.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// Reads the pid named by `path`.
pub fn read(path: &Path) -> io::Result<i32> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no pid in it ({:?})", text.trim()),
            )
        })
}

/// Writes `pid` to `path` atomically (a temporary file renamed over it), so a reader never sees
/// an empty or half-written file. The folder is created if missing.
pub fn write(path: &Path, pid: i32) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() {
            std::fs::create_dir_all(dir)?;
        }
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, format!("{pid}\n"))?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Removes the pid file if it still names `pid` (a file another master wrote is left alone).
pub fn remove(path: &Path, pid: i32) {
    if read(path).ok() == Some(pid) {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("could not remove the pid file {}: {e}", path.display());
        }
    }
}

/// Whether `pid` is a live huststore process: it exists (a signal 0 reaches it, or is refused
/// only for lack of permission), is not a zombie, and its command line mentions huststore. The
/// last check keeps a stale pid file whose pid was reused by another program from counting.
pub fn is_huststore_alive(pid: i32) -> bool {
    if pid <= 0 || pid == std::process::id() as i32 {
        return false;
    }
    match kill(Pid::from_raw(pid), None) {
        Ok(()) | Err(Errno::EPERM) => {}
        Err(_) => return false,
    }
    // A zombie still answers signal 0 but has an empty command line, which fails the next check.
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => is_huststore_cmdline(&cmdline),
        Err(_) => false,
    }
}

/// Whether the program of a /proc command line (NUL-separated) is huststore: the file name of
/// argv[0], not any argument or folder (a checkout folder named huststore runs other programs).
fn is_huststore_cmdline(cmdline: &[u8]) -> bool {
    let argv0 = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let name = argv0.rsplit(|&b| b == b'/').next().unwrap_or_default();
    name.starts_with(b"huststore")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_remove() {
        let dir = std::env::temp_dir().join(format!("huststore-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        write(&path, 4242).unwrap();
        assert_eq!(read(&path).unwrap(), 4242);
        remove(&path, 1);
        assert!(path.exists(), "a pid file naming another pid is kept");
        remove(&path, 4242);
        assert!(!path.exists());
        std::fs::write(&path, "junk").unwrap();
        assert!(read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_the_program_name_counts() {
        assert!(is_huststore_cmdline(
            b"/usr/bin/huststore\0-c\0/etc/h.conf\0"
        ));
        assert!(is_huststore_cmdline(b"huststore\0"));
        assert!(!is_huststore_cmdline(
            b"/src/huststore/target/lifecycle-1\0"
        ));
        assert!(!is_huststore_cmdline(b"vi\0huststore.conf\0"));
        assert!(!is_huststore_cmdline(b""));
    }

    #[test]
    fn liveness() {
        assert!(!is_huststore_alive(std::process::id() as i32));
        assert!(!is_huststore_alive(0));
        assert!(!is_huststore_alive(i32::MAX));
    }
}
