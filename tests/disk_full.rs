//! A full disk, through the real binary (issue 12): `data_dir` on a 64 MiB tmpfs that the test
//! mounts (root only; skipped with a SKIPPED line elsewhere, a failure under CI). The store
//! fills the disk with data before it refuses, refuses with `507` (never `500`), every delete
//! still succeeds on the full disk, writes come back after deletes without a restart, the
//! error log says "the disk is full" a bounded number of times, and `/metrics` counts the
//! refusals by reason; the journal gives the blocks of what the checkpoints cover back. A
//! full journal (a 128 MiB tmpfs whose free space a ballast file takes) answers 507 too,
//! deletes go on, and writes come back once space is freed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::netns::in_ci;
use common::{get, request, temp_dir, Server};

/// A tmpfs mounted for the test's life.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = temp_dir().join("fs");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn tmpfs_or_skip(size: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(size) {
        Ok(fs) => Some(fs),
        Err(e) if in_ci() => panic!("CI must run the disk-full tests (as root), but: {e}"),
        Err(e) => {
            eprintln!("SKIPPED: disk-full test needs to mount a tmpfs (root): {e}");
            None
        }
    }
}

fn put(server: &Server, key: &str, val: &[u8]) -> u16 {
    request(server.addr(), "POST", &format!("/put?key={key}"), val).status
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(u64::MAX)
}

/// Bytes of blocks of the files in the journal folders under `dir`.
fn journal_blocks(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut folders = vec![dir.to_path_buf()];
    // Bounded: the data folder holds a handful of folders.
    for _ in 0..64 {
        let Some(folder) = folders.pop() else {
            break;
        };
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(md) = entry.metadata() else {
                continue;
            };
            if md.is_dir() {
                folders.push(entry.path());
            } else if folder.file_name().is_some_and(|n| n == "journal") {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

fn metric(server: &Server, line_start: &str) -> u64 {
    let text = get(server.addr(), "/metrics").text();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A daemon of two workers whose `data_dir` is on `fs`, with a map larger than the disk (so
/// that the disk, not the map, runs out); and its data folder.
fn start_on(fs: &Tmpfs) -> (Server, std::path::PathBuf) {
    let data = fs.dir.join("data");
    let data_text = data.to_str().expect("utf-8 path").to_string();
    let server = Server::start(&[
        ("data_dir", &data_text),
        ("map_size", "1g"),
        ("worker_processes", "2"),
    ]);
    (server, data)
}

#[test]
fn a_small_disk_fills_with_data_deletes_always_succeed_and_writes_come_back() {
    let Some(fs) = tmpfs_or_skip("64m") else {
        return;
    };
    let (server, data) = start_on(&fs);
    let value = vec![b'v'; 16 << 10];
    // Fill: bounded by the disk (64 MiB / 16 KiB = 4096 at most) and by time.
    let start = Instant::now();
    let mut stored = Vec::new();
    let mut refusal = None;
    for i in 0..6000 {
        assert!(start.elapsed() < Duration::from_secs(120), "fill too slow");
        let key = format!("k{i}");
        match put(&server, &key, &value) {
            200 => stored.push(key),
            status => {
                refusal = Some(status);
                break;
            }
        }
    }
    assert_eq!(refusal, Some(507), "a full disk must be refused with 507");
    eprintln!("stored {} values before the disk was full", stored.len());
    // It held data up to what the disk holds: at least half of it in values (a 16 KiB value
    // takes five 4 KiB pages, and the journal writes each value once more, its blocks given
    // back by the next checkpoint; 40-47 MiB in 30 runs here, 20-37 MiB with checkpoints
    // every 250 ms on a nearly full disk).
    let held = stored.len() as u64 * value.len() as u64;
    assert!(
        held >= 32 << 20,
        "only {held} bytes stored on a 64 MiB disk"
    );
    // Full: the data file leaves the journal a few MiB (storage room.rs, KEEP_FREE).
    assert!(free_bytes(&fs.dir) < 10 << 20, "the disk is not full");
    // Every value went through the journal, which kept only a few MiB of it: the checkpoints
    // gave the covered records' blocks back. The last records are covered by the next
    // checkpoint (every 50 ms on a nearly full disk, later on a loaded machine; at 250 ms CI
    // once saw 13 MiB at the moment the disk filled, 2 MiB 100 ms later), so this polls,
    // bounded.
    let mut journal = journal_blocks(&data);
    common::wait_until(Duration::from_secs(5), || {
        journal = journal_blocks(&data);
        journal < 12 << 20
    });
    assert!(
        journal < 12 << 20,
        "the journal holds {journal} bytes of blocks after {held} bytes of values"
    );
    // Every delete succeeds on the full disk.
    let half = stored.len() / 2;
    // A burst of deletes faster than the checkpoint can take new pages while the pages they
    // free are still pinned (see storage's room.rs); such a delete succeeds within moments.
    let mut retried = 0;
    for key in &stored[..half] {
        let mut status = get(server.addr(), &format!("/del?key={key}")).status;
        if status == 507 {
            retried += 1;
            common::wait_until(Duration::from_secs(3), || {
                status = get(server.addr(), &format!("/del?key={key}")).status;
                status != 507
            });
        }
        assert_eq!(
            status,
            200,
            "delete {key} on a full disk; log:\n{}",
            server.error_log()
        );
    }
    eprintln!("deletes on the full disk: {half}, {retried} of them retried after a 507");
    assert!(
        !server.error_log().contains("deletes are refused"),
        "{}",
        server.error_log()
    );
    // Writes come back without a restart (the checkpoint gives the journal's covered space
    // back within its interval: poll, bounded).
    let back = common::wait_until(Duration::from_secs(20), || {
        put(&server, "after-deletes", &value) == 200
    });
    assert!(
        back,
        "writes did not come back after deleting half the data; log:\n{}",
        server.error_log()
    );
    // Pages freed by the deletes are reused once no snapshot older than them is open (the
    // checkpoint keeps one for up to its interval): a refusal meanwhile is retried, bounded.
    let mut refilled = 0;
    for i in 0..half {
        let key = format!("r{i}");
        let stored =
            common::wait_until(Duration::from_secs(5), || put(&server, &key, &value) == 200);
        if !stored {
            break;
        }
        refilled += 1;
    }
    assert!(
        refilled >= half / 2,
        "only {refilled} of {half} values fit again after the deletes; log:\n{}",
        server.error_log()
    );
    // Every value kept is intact.
    for key in stored[half..].iter().step_by(97) {
        let r = get(server.addr(), &format!("/get?key={key}"));
        assert_eq!((r.status, r.body.len()), (200, value.len()), "{key}");
    }
    let log = server.error_log();
    let lines = log.matches("the disk is full").count();
    assert!(lines >= 1, "no log line says the disk is full:\n{log}");
    // Rate-limited: at most one a minute per reason and process (2 workers, data + journal).
    assert!(lines <= 8, "{lines} disk-full lines:\n{log}");
    assert!(
        !log.contains("answering the pass's requests with 500"),
        "{log}"
    );
    assert!(metric(&server, "huststore_store_full_total{reason=\"disk\"}") >= 1);
    assert_eq!(
        metric(&server, "huststore_store_full_total{reason=\"map\"}"),
        0
    );
    drop(server);
}

/// Takes every free byte of a filesystem, topped up on demand.
struct Ballast {
    path: PathBuf,
    file: std::fs::File,
}

impl Ballast {
    fn new(path: PathBuf) -> Ballast {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("ballast");
        Ballast { path, file }
    }

    /// Appends until the filesystem is full (bounded: 64 MiB in 4 KiB writes at most).
    fn top_up(&mut self) {
        use std::io::Write;
        for size in [64 << 10, 4 << 10] {
            let buf = vec![b'b'; size];
            for _ in 0..(64 << 20) / size {
                match self.file.write(&buf) {
                    Ok(n) if n == size => {}
                    _ => break,
                }
            }
        }
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The journal on a full disk (issue 12): the journal lives in `data_dir`, and once the
/// disk cannot give its segment the blocks of a growing write's record, that write answers
/// 507 (never 500) while the data file still has room; deletes go on (their records use the
/// journal's reserve); and writes come back without a restart once space is freed.
#[test]
fn a_full_journal_answers_507_and_writes_come_back_once_space_is_freed() {
    let Some(fs) = tmpfs_or_skip("128m") else {
        return;
    };
    let (server, _data) = start_on(&fs);
    let value = vec![b'j'; 16 << 10];
    // The first writes allocate the data file's blocks well ahead (a quarter of the free
    // disk: some 30 MiB on this one) and the journal's only 5 MiB ahead: the journal runs out
    // first (after some 250 values, the data file's pages then some 10 MiB).
    for i in 0..8 {
        assert_eq!(put(&server, &format!("w{i}"), &value), 200);
    }
    // The ballast takes whatever the disk has left, also what the checkpoints give back.
    let mut ballast = Ballast::new(fs.dir.join("ballast"));
    let start = Instant::now();
    let mut stored = Vec::new();
    let mut refusal = None;
    for i in 0..2000 {
        assert!(start.elapsed() < Duration::from_secs(120), "fill too slow");
        ballast.top_up();
        let key = format!("j{i}");
        match put(&server, &key, &value) {
            200 => stored.push(key),
            status => {
                refusal = Some(status);
                break;
            }
        }
    }
    let log = server.error_log();
    assert_eq!(
        refusal,
        Some(507),
        "a full journal must answer 507; log:\n{log}"
    );
    assert!(
        log.contains("the journal could not get room"),
        "the refusal was not the journal's:\n{log}"
    );
    assert!(
        !stored.is_empty(),
        "nothing stored before the journal was full"
    );
    eprintln!("stored {} values before the journal was full", stored.len());
    // Deletes go on with the disk still full.
    for key in stored.iter().take(4) {
        assert_eq!(
            get(server.addr(), &format!("/del?key={key}")).status,
            200,
            "delete {key} with a full journal; log:\n{}",
            server.error_log()
        );
    }
    // Space freed: writes come back, no restart.
    drop(ballast);
    let back = common::wait_until(Duration::from_secs(20), || {
        put(&server, "after-space", &value) == 200
    });
    assert!(
        back,
        "writes did not come back once space was freed; log:\n{}",
        server.error_log()
    );
    let r = get(server.addr(), "/get?key=after-space");
    assert_eq!((r.status, r.body.len()), (200, value.len()));
    for key in stored.iter().skip(4).step_by(31) {
        let r = get(server.addr(), &format!("/get?key={key}"));
        assert_eq!((r.status, r.body.len()), (200, value.len()), "{key}");
    }
    let log = server.error_log();
    assert!(
        !log.contains("answering the pass's requests with 500"),
        "{log}"
    );
    assert!(metric(&server, "huststore_store_full_total{reason=\"disk\"}") >= 1);
    drop(server);
}

#[test]
fn a_full_map_is_told_apart_from_a_full_disk() {
    let server = Server::start(&[("map_size", "1m"), ("worker_processes", "1")]);
    let value = vec![b'm'; 64 << 10];
    let mut refused = None;
    for i in 0..64 {
        let status = put(&server, &format!("m{i}"), &value);
        if status != 200 {
            refused = Some(status);
            break;
        }
    }
    assert_eq!(refused, Some(507));
    let log = server.error_log();
    assert!(log.contains("the map is full"), "{log}");
    assert!(!log.contains("the disk is full"), "{log}");
    // The metrics line shows up once a later pass commits.
    assert_eq!(get(server.addr(), "/del?key=m0").status, 200);
    assert!(metric(&server, "huststore_store_full_total{reason=\"map\"}") >= 1);
}
