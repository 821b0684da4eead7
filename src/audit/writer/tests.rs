use std::sync::mpsc;

use prometheus_client::metrics::gauge::Gauge;

use super::*;
use crate::audit::verify::{self, Summary};
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

/// Every file of the trail, oldest first, as `audit verify` is told to read them.
fn trail(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|p| p != path)
        .collect();
    rotated.sort();
    rotated.push(path.to_path_buf());
    rotated
        .into_iter()
        .map(|p| {
            let content = std::fs::read(&p).unwrap();
            (p, content)
        })
        .collect()
}

fn verified(path: &Path) -> Summary {
    let files = trail(path);
    verify::verify(
        &MacKey::new(KEY),
        files.iter().map(|(p, c)| (p.as_path(), c.as_slice())),
    )
    .unwrap()
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
}

#[test]
fn rotation_keeps_one_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // Each line is about 190 bytes: a few lines per file.
    write(&path, 4096, 60);
    let files = trail(&path);
    assert!(files.len() > 2, "{} files", files.len());
    assert!(files.iter().all(|(_, c)| c.len() <= 4096));
    let summary = verified(&path);
    assert_eq!((summary.records, summary.starts.len()), (60, 1));
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
        let fault = verify::verify(&MacKey::new(KEY), [(old.0.as_path(), old.1.as_slice())]);
        assert_eq!(fault.unwrap_err().place.line, 3, "{damage:?}");
        let new_text = String::from_utf8_lossy(&new.1);
        assert!(
            new_text.starts_with(r#"{"seq":0,"event":"chain_restart""#),
            "{new_text}"
        );
        let summary = verify::verify(&MacKey::new(KEY), [(new.0.as_path(), new.1.as_slice())]);
        assert_eq!(summary.unwrap().records, 2);
    }
}
