use std::sync::mpsc;

use prometheus_client::metrics::gauge::Gauge;

use super::*;
use crate::audit::entry::RestartReason;
use crate::audit::verify::{self, Fault, HeadFile, Problem, Summary};
use crate::record::Capacity;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// Opens the trail at `path` and writes `count` records through the writer's own loop.
fn write(path: &Path, max: u64, count: usize) {
    let destination = AuditDestination::File(path.to_path_buf());
    let writer = Writer::open(&destination, MacKey::new(KEY), max).unwrap();
    let capacity = Capacity::new(count.max(1), Gauge::default());
    let (sender, queue) = mpsc::channel();
    for n in 0..count {
        let fields = format!(r#""event":"decision","n":{n}"#);
        let slot = capacity.reserve().unwrap();
        sender.send(Queued { fields, slot }).unwrap();
    }
    drop(sender);
    writer.run(&queue, &Arc::new(Metrics::new()));
}

/// Every file of the trail, oldest first, as `audit verify` is told to read them (the head and
/// its temporary file are not part of it).
fn trail(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let head = head::path(path);
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p != path && *p != head)
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    rotated.sort();
    rotated.push(path.to_path_buf());
    rotated
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).unwrap_or_default();
            (p, content)
        })
        .collect()
}

/// Verifies `files` against the head beside `path`.
fn verify_with_head(path: &Path, files: &[(PathBuf, Vec<u8>)]) -> Result<Summary, Fault> {
    let head_path = head::path(path);
    let head = std::fs::read(&head_path).unwrap();
    verify::verify(
        &MacKey::new(KEY),
        files.iter().map(|(p, c)| (p.as_path(), c.as_slice())),
        HeadFile::Read(&head_path, &head),
    )
}

fn verified(path: &Path) -> Summary {
    verify_with_head(path, &trail(path)).unwrap()
}

/// The file's lines, each with its newline.
fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.split_inclusive('\n').map(str::to_owned).collect()
}

/// The `chain_restart` record that starts the live file.
fn restart_record(path: &Path) -> serde_json::Value {
    let first = lines(path).remove(0);
    let record: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(record["event"], "chain_restart", "{record}");
    record
}

#[test]
fn a_restart_resumes_the_chain_from_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 1 << 20, 3);
    write(&path, 1 << 20, 2);
    let summary = verified(&path);
    assert_eq!(summary.records, 5);
    assert_eq!(summary.starts.len(), 1, "{summary:?}");
    let head = summary.head.unwrap();
    assert_eq!(head.head.last.map(|last| last.seq), Some(4));
    assert_eq!((head.head.file.as_str(), head.after), ("audit.log", 0));
}

#[test]
fn rotation_keeps_one_chain_across_files_under_the_live_files_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // Each line is about 190 bytes: a few lines per file.
    write(&path, 4096, 60);
    let files = trail(&path);
    assert!(files.len() > 2, "{} files", files.len());
    assert!(files.iter().all(|(_, c)| c.len() <= 4096));
    let summary = verified(&path);
    assert_eq!((summary.records, summary.starts.len()), (60, 1));
    assert_eq!(
        summary.head.unwrap().head.last.map(|last| last.seq),
        Some(59)
    );
    // Whole lines cut from the live file's end show against the head.
    let live = lines(&path);
    std::fs::write(&path, live[..live.len() - 1].concat()).unwrap();
    let fault = verify_with_head(&path, &trail(&path)).unwrap_err();
    assert_eq!(
        fault.problem,
        Problem::MissingAfter {
            last: Some(58),
            head: 59
        }
    );
}

#[test]
fn a_damaged_tail_moves_aside_and_the_chain_restarts() {
    for damage in ["half a line", "{\"seq\":9,\"event\":\"decision\"}\n"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        write(&path, 1 << 20, 2);
        let mut file = append(&path).unwrap();
        file.write_all(damage.as_bytes()).unwrap();
        write(&path, 1 << 20, 1);
        let files = trail(&path);
        assert_eq!(files.len(), 2, "{damage:?}");
        // The damaged file still shows its damage; the new one starts with the restart event.
        let (old, new) = (&files[0], &files[1]);
        let fault = verify::verify(
            &MacKey::new(KEY),
            [(old.0.as_path(), old.1.as_slice())],
            HeadFile::Waived,
        );
        assert_eq!(fault.unwrap_err().place.line, 3, "{damage:?}");
        assert_eq!(restart_record(&path)["reason"], "damaged_tail");
        let summary = verify_with_head(&path, std::slice::from_ref(new));
        assert_eq!(summary.unwrap().records, 2);
    }
}

/// A trail of five records, then `damage` done to it while the gateway was stopped, then one
/// more record written: the chain restarts for `reason`, the file before is kept aside, and
/// the whole trail fails to verify at the restart while the files from it on pass.
#[track_caller]
fn check_restart(damage: impl Fn(&Path), reason: RestartReason) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 1 << 20, 5);
    damage(&path);
    write(&path, 1 << 20, 1);
    let record = restart_record(&path);
    assert_eq!(record["reason"], reason.as_str(), "{record}");
    let files = trail(&path);
    let whole = verify_with_head(&path, &files);
    if files.len() > 1 {
        let fault = whole.unwrap_err();
        assert_eq!((fault.place.file.as_path(), fault.place.line), (&*path, 1));
    }
    let live = verify_with_head(&path, &files[files.len() - 1..]).unwrap();
    assert_eq!((live.records, live.starts.len()), (2, 1));
    record
}

fn keep_lines(count: usize) -> impl Fn(&Path) {
    move |path: &Path| std::fs::write(path, lines(path)[..count].concat()).unwrap()
}

#[test]
fn a_resume_after_whole_lines_were_cut_restarts_the_chain_as_truncated() {
    let record = check_restart(keep_lines(3), RestartReason::Truncated);
    assert_eq!(
        (&record["head_seq"], &record["last_seq"]),
        (&4.into(), &2.into())
    );
    // Emptied or deleted: nothing to move aside, and the record says the file held none.
    let emptied = check_restart(keep_lines(0), RestartReason::Truncated);
    assert_eq!(emptied["last_seq"], serde_json::Value::Null, "{emptied}");
    let removed = |path: &Path| std::fs::remove_file(path).unwrap();
    check_restart(removed, RestartReason::Truncated);
}

#[test]
fn a_resume_against_a_missing_or_damaged_head_restarts_the_chain() {
    let remove_head = |path: &Path| std::fs::remove_file(head::path(path)).unwrap();
    check_restart(remove_head, RestartReason::HeadMissing);
    let foreign = |path: &Path| {
        let head = Head::now(path, None).seal(&MacKey::new(b"another key, also of 32 bytes..."));
        std::fs::write(head::path(path), head).unwrap();
    };
    check_restart(foreign, RestartReason::HeadDamaged);
    // A head naming a record of another chain, sealed under the trail's key.
    let other_chain = |path: &Path| {
        let (line, _) = chain::seal(&MacKey::new(KEY), &Link::genesis(), r#""event":"x""#);
        let (mut other, _) = chain::seal(
            &MacKey::new(KEY),
            &Link {
                seq: 3,
                prev: chain::open(&MacKey::new(KEY), line.trim_end()).unwrap().mac,
            },
            r#""event":"x""#,
        );
        other.pop();
        let sealed = chain::open(&MacKey::new(KEY), &other).unwrap();
        let head = Head::now(path, Some(RecordId::of(&sealed))).seal(&MacKey::new(KEY));
        std::fs::write(head::path(path), head).unwrap();
    };
    check_restart(other_chain, RestartReason::HeadMismatch);
}

#[test]
fn records_synced_after_the_last_head_are_resumed_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 1 << 20, 3);
    // A crash between a batch's sync and its head: two more records the head does not name.
    let head_before = std::fs::read(head::path(&path)).unwrap();
    write(&path, 1 << 20, 2);
    std::fs::write(head::path(&path), &head_before).unwrap();
    write(&path, 1 << 20, 1);
    let summary = verified(&path);
    assert_eq!(
        (summary.records, summary.starts.len()),
        (6, 1),
        "{summary:?}"
    );
}

#[test]
fn a_crash_during_rotation_resumes_from_the_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    write(&path, 1 << 20, 3);
    // The file moved aside, its successor not yet written: the head names its last record.
    move_aside(&path).unwrap();
    write(&path, 1 << 20, 2);
    let summary = verified(&path);
    assert_eq!(
        (summary.records, summary.starts.len()),
        (5, 1),
        "{summary:?}"
    );
    assert_eq!(trail(&path).len(), 2);
}
