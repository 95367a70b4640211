//! The engine's flusher thread: group commit (one `fdatasync` for every write pending at that
//! moment, then all their callbacks) and compaction (the live records rewritten into a new
//! file renamed over the old, when dead records outweigh live ones). It runs off the async
//! runtime, so a slow disk never stalls the tasks that append.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use super::{fsync_dir, Shared, State, COMPACT_FILE, LOG_FILE, MAGIC};

fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// The flusher: waits for callbacks, syncs once for all of them, calls them; compacts when
/// garbage dominates; ends when the engine closes and nothing is pending.
pub(super) fn flush_loop(shared: &Shared) {
    loop {
        let (file, batch) = {
            let mut st = shared.lock();
            while st.pending.is_empty() && !st.closing {
                st = match shared.wake.wait(st) {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
            }
            if st.pending.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut st.pending);
            let file = match &st.failed {
                Some(_) => None,
                None => Some(st.file.clone()),
            };
            (file, batch)
        };
        let result = match file {
            Some(file) => file.sync_data(),
            None => Err(io::Error::other("the consensus log is poisoned")),
        };
        shared.lock().syncs += 1;
        if let Err(e) = &result {
            log::error!("could not sync the consensus log: {e}");
            shared
                .lock()
                .failed
                .get_or_insert_with(|| format!("sync: {e}"));
        }
        for done in batch {
            done(result.as_ref().map(|_| ()).map_err(copy_error));
        }
        let mut st = shared.lock();
        let garbage = st.len - st.live;
        if st.failed.is_none() && st.len >= shared.compact_min && garbage > st.live {
            if let Err(e) = compact(shared, &mut st) {
                log::error!("could not compact the consensus log: {e}");
            }
        }
    }
}

/// Writes every live record into `log.compact`, fsyncs it, renames it over `log` and fsyncs
/// the folder; the indexes move to the new offsets only once the rename is done.
pub(super) fn compact(shared: &Shared, st: &mut State) -> io::Result<()> {
    let tmp = shared.dir.join(COMPACT_FILE);
    let result = write_compacted(&tmp, st);
    let (file, new_offsets, len) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Err(e) = fs::rename(&tmp, shared.dir.join(LOG_FILE)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // From here on the new file is the log, whatever fails.
    let mut groups: Vec<_> = st.groups.iter_mut().collect();
    groups.sort_by_key(|(id, _)| **id);
    let spans = groups.into_iter().flat_map(|(_, g)| g.spans_mut());
    for (span, offset) in spans.zip(new_offsets) {
        span.offset = offset;
    }
    log::info!("compacted the consensus log from {} to {len} bytes", st.len);
    st.file = Arc::new(file);
    st.len = len;
    st.live = len - MAGIC.len() as u64;
    if let Err(e) = fsync_dir(&shared.dir) {
        // The rename may not survive a crash, and later records would follow the old file.
        st.failed = Some(format!("fsync of the log's folder: {e}"));
        return Err(e);
    }
    Ok(())
}

/// The compacted file, synced, each live record's new offset (in `spans_mut` order) and the
/// file's length.
fn write_compacted(tmp: &Path, st: &mut State) -> io::Result<(File, Vec<u64>, u64)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, &file);
    out.write_all(MAGIC)?;
    let mut at = MAGIC.len() as u64;
    let mut offsets = Vec::new();
    let old = st.file.clone();
    let mut groups: Vec<_> = st.groups.iter_mut().collect();
    groups.sort_by_key(|(id, _)| **id);
    let mut rec = Vec::new();
    for (_, g) in groups {
        for span in g.spans_mut() {
            rec.resize(span.len as usize, 0);
            old.read_exact_at(&mut rec, span.offset)?;
            out.write_all(&rec)?;
            offsets.push(at);
            at += u64::from(span.len);
        }
    }
    out.flush()?;
    drop(out);
    file.sync_all()?;
    Ok((file, offsets, at))
}
