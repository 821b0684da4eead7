use std::path::Path;

use super::*;
use crate::audit::chain::{GENESIS, seal};
use crate::audit::head::Head;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A trail of `count` records, one line each.
fn trail(key: &[u8], from: &Link, count: usize) -> Vec<String> {
    let key = MacKey::new(key);
    let mut link = from.clone();
    (0..count)
        .map(|n| {
            let (line, next) = seal(&key, &link, &format!(r#""event":"decision","n":{n}"#));
            link = next;
            line
        })
        .collect()
}

const HEAD: &str = "audit.log.head";

/// A head sealed under `key`, naming the record `line` (none for `None`).
fn head_naming(key: &[u8], line: Option<&String>) -> String {
    let last =
        line.map(|line| RecordId::of(&chain::open(&MacKey::new(key), line.trim_end()).unwrap()));
    Head::now(Path::new("audit.log"), last).seal(&MacKey::new(key))
}

/// Verifies `files` (named `audit.log.0`, `audit.log.1`, …) against `head`.
fn run(files: &[Vec<String>], head: HeadFile<'_>) -> Result<Summary, Fault> {
    let names: Vec<String> = (0..files.len()).map(|n| format!("audit.log.{n}")).collect();
    let contents: Vec<String> = files.iter().map(|lines| lines.concat()).collect();
    let given = names
        .iter()
        .zip(&contents)
        .map(|(name, content)| (Path::new(name.as_str()), content.as_bytes()));
    verify(&MacKey::new(KEY), given, head)
}

/// Checks `files` against the head in `head` (`None`: waived), expecting a record count or the
/// first problem by file and line.
#[track_caller]
fn check_with(
    files: &[Vec<String>],
    head: Option<&str>,
    expected: Result<u64, (&str, usize, Problem)>,
) {
    let head = match head {
        Some(line) => HeadFile::Read(Path::new(HEAD), line.as_bytes()),
        None => HeadFile::Waived,
    };
    let got = run(files, head)
        .map(|summary| summary.records)
        .map_err(|fault| {
            (
                fault.place.file.display().to_string(),
                fault.place.line,
                fault.problem,
            )
        });
    let expected = expected.map_err(|(file, line, problem)| (file.to_owned(), line, problem));
    assert_eq!(got, expected);
}

/// Checks the chain alone, as `--no-head` does.
#[track_caller]
fn check(files: &[Vec<String>], expected: Result<u64, (&str, usize, Problem)>) {
    check_with(files, None, expected);
}

#[test]
fn an_intact_trail_verifies_across_files() {
    let lines = trail(KEY, &Link::genesis(), 6);
    check(std::slice::from_ref(&lines), Ok(6));
    check(&[lines[..2].to_vec(), lines[2..].to_vec()], Ok(6));
    // Earlier files archived: the first record given anchors the chain, and says so.
    check(&[lines[3..].to_vec()], Ok(3));
    let rest = lines[3..].concat();
    let summary = verify(
        &MacKey::new(KEY),
        [(Path::new("b"), rest.as_bytes())],
        HeadFile::Waived,
    )
    .unwrap();
    assert_eq!((summary.continues_from, summary.starts.len()), (Some(3), 0));
    check(&[], Ok(0));
}

#[test]
fn each_kind_of_tampering_names_the_first_bad_record() {
    let lines = trail(KEY, &Link::genesis(), 5);
    let edited = {
        let mut l = lines.clone();
        l[2] = l[2].replace(r#""n":2"#, r#""n":9"#);
        l
    };
    check(&[edited], Err(("audit.log.0", 3, Problem::BadMac)));

    let dropped = [&lines[..2], &lines[3..]].concat();
    let gap = Problem::OutOfOrder {
        expected: 2,
        found: 3,
    };
    check(&[dropped], Err(("audit.log.0", 3, gap)));

    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    let swap = Problem::OutOfOrder {
        expected: 1,
        found: 2,
    };
    check(&[reordered], Err(("audit.log.0", 2, swap)));

    let mut truncated = lines.clone();
    truncated[4].truncate(40);
    check(&[truncated], Err(("audit.log.0", 5, Problem::Truncated)));

    let mut forged = lines.clone();
    let without_key = trail(
        b"not the key, but as long as it..",
        &Link {
            seq: 5,
            prev: GENESIS.into(),
        },
        1,
    );
    forged.extend(without_key);
    check(&[forged], Err(("audit.log.0", 6, Problem::BadMac)));

    let mut junk = lines.clone();
    junk.insert(1, "{\"seq\":1}\n".into());
    check(&[junk], Err(("audit.log.0", 2, Problem::Malformed)));

    // A whole file left out between two others breaks the chain where the next one starts.
    let files = [
        lines[..1].to_vec(),
        lines[1..3].to_vec(),
        lines[3..].to_vec(),
    ];
    let missing = Problem::OutOfOrder {
        expected: 1,
        found: 3,
    };
    check(
        &[files[0].clone(), files[2].clone()],
        Err(("audit.log.1", 1, missing)),
    );
}

#[test]
fn a_same_numbered_record_from_another_chain_is_a_broken_link() {
    let lines = trail(KEY, &Link::genesis(), 3);
    let other = trail(
        KEY,
        &Link {
            seq: 2,
            prev: "ab".repeat(32),
        },
        1,
    );
    check(
        &[[&lines[..2], &other[..]].concat()],
        Err(("audit.log.0", 3, Problem::BrokenLink)),
    );
}

#[test]
fn a_chain_restart_anchors_anew() {
    let before = trail(KEY, &Link::genesis(), 2);
    let after = trail(KEY, &Link::genesis(), 2);
    let summary = verify(
        &MacKey::new(KEY),
        [
            (Path::new("a"), before.concat().as_bytes()),
            (Path::new("b"), after.concat().as_bytes()),
        ],
        HeadFile::Waived,
    )
    .unwrap();
    assert_eq!(summary.records, 4);
    let starts: Vec<String> = summary.starts.iter().map(|s| s.place.to_string()).collect();
    assert_eq!(starts, ["a:1", "b:1"]);
}

#[test]
fn an_intact_trail_with_its_head_verifies_and_counts_records_written_after_it() {
    let lines = trail(KEY, &Link::genesis(), 5);
    let head = head_naming(KEY, lines.last());
    check_with(std::slice::from_ref(&lines), Some(&head), Ok(5));
    check_with(
        &[lines[..2].to_vec(), lines[2..].to_vec()],
        Some(&head),
        Ok(5),
    );
    // Records synced after the head was last written (a crash before the next one) are
    // chained like the rest; so is a trail whose head was written before its first record.
    for (head, after) in [
        (head_naming(KEY, lines.get(2)), 2),
        (head_naming(KEY, None), 5),
        (head, 0),
    ] {
        let read = HeadFile::Read(Path::new(HEAD), head.as_bytes());
        let summary = run(std::slice::from_ref(&lines), read).unwrap();
        assert_eq!(summary.head.map(|seen| seen.after), Some(after));
    }
    // An empty trail and a head written before its first record.
    check_with(&[vec![]], Some(&head_naming(KEY, None)), Ok(0));
}

#[test]
fn whole_lines_cut_from_the_end_are_named_against_the_head() {
    let lines = trail(KEY, &Link::genesis(), 5);
    let head = head_naming(KEY, lines.last());
    let cut = |last| Problem::MissingAfter { last, head: 4 };
    check_with(
        &[lines[..3].to_vec()],
        Some(&head),
        Err(("audit.log.0", 3, cut(Some(2)))),
    );
    check_with(
        &[lines[..4].to_vec()],
        Some(&head),
        Err(("audit.log.0", 4, cut(Some(3)))),
    );
    // The newest file emptied, or left out.
    check_with(
        &[lines[..2].to_vec(), vec![]],
        Some(&head),
        Err(("audit.log.1", 0, cut(Some(1)))),
    );
    check_with(&[vec![]], Some(&head), Err(("audit.log.0", 0, cut(None))));
    check_with(&[], Some(&head), Err((HEAD, 1, cut(None))));
    let message = cut(Some(2)).to_string();
    assert!(
        message.contains("records after seq 2 are missing: the head names seq 4"),
        "{message}"
    );
}

#[test]
fn a_forged_edited_or_foreign_head_is_refused() {
    let lines = trail(KEY, &Link::genesis(), 3);
    let head = head_naming(KEY, lines.last());
    let files = [lines.clone()];
    let bad = |problem| Err((HEAD, 1, problem));
    check_with(
        &files,
        Some(&head.replace("\"last_seq\":2", "\"last_seq\":1")),
        bad(Problem::HeadBadMac),
    );
    // Sealed under another key, or a record passed off as a head.
    let foreign = head_naming(b"not the key, but as long as it..", None);
    check_with(&files, Some(&foreign), bad(Problem::HeadBadMac));
    check_with(&files, Some(&lines[2]), bad(Problem::HeadBadMac));
    check_with(&files, Some("{}\n"), bad(Problem::HeadMalformed));
    check_with(
        &files,
        Some(&head[..head.len() - 1]),
        bad(Problem::HeadMalformed),
    );
}

#[test]
fn a_missing_head_fails_unless_waived() {
    let lines = trail(KEY, &Link::genesis(), 3);
    let missing = run(
        std::slice::from_ref(&lines),
        HeadFile::Missing(Path::new(HEAD)),
    );
    let fault = missing.unwrap_err();
    assert_eq!((fault.place.line, fault.problem), (0, Problem::HeadMissing));
    assert!(
        fault.to_string().starts_with("audit.log.head: no head"),
        "{fault:?}"
    );
    check(&[lines], Ok(3));
}

#[test]
fn a_head_of_another_chain_under_the_same_key_is_refused() {
    let lines = trail(KEY, &Link::genesis(), 5);
    let elsewhere = Link {
        seq: 0,
        prev: "ab".repeat(32),
    };
    let other = trail(KEY, &elsewhere, 5);
    check_with(
        &[lines],
        Some(&head_naming(KEY, other.get(3))),
        Err(("audit.log.0", 5, Problem::NotTheHeadsRecord { head: 3 })),
    );
}

#[test]
fn the_live_files_head_covers_a_rotated_set() {
    let lines = trail(KEY, &Link::genesis(), 9);
    let files = [
        lines[..3].to_vec(),
        lines[3..6].to_vec(),
        lines[6..].to_vec(),
    ];
    let head = head_naming(KEY, lines.last());
    check_with(&files, Some(&head), Ok(9));
    // Cut from the live file's end, or the live file left out.
    let cut = Problem::MissingAfter {
        last: Some(7),
        head: 8,
    };
    let short = [files[0].clone(), files[1].clone(), lines[6..8].to_vec()];
    check_with(&short, Some(&head), Err(("audit.log.2", 2, cut)));
    let cut = Problem::MissingAfter {
        last: Some(5),
        head: 8,
    };
    check_with(&files[..2], Some(&head), Err(("audit.log.1", 3, cut)));
    // A head written just before a rotation names the rotated file's last record: the live
    // file, given alone, starts right after it.
    let before_rotation = head_naming(KEY, lines.get(5));
    check_with(&files[2..], Some(&before_rotation), Ok(3));
}

/// A `chain_restart` record as the writer seals it.
fn restart(reason: &str, extra: &str) -> String {
    let fields = format!(r#""event":"chain_restart","time":"t","reason":"{reason}"{extra}"#);
    seal(&MacKey::new(KEY), &Link::genesis(), &fields).0
}

#[test]
fn a_restart_after_lost_records_or_without_a_head_is_refused_after_the_file_before() {
    let before = trail(KEY, &Link::genesis(), 3);
    let cut = restart("truncated", r#","head_seq":5,"last_seq":2"#);
    let after = [vec![cut.clone()], trail(KEY, &open_link(&cut), 2)].concat();
    let head = head_naming(KEY, after.last());
    let lost = Restart {
        reason: RestartReason::Truncated,
        head_seq: Some(5),
        last_seq: Some(2),
    };
    let refused = Err(("audit.log.1", 1, Problem::RestartedAfterLoss(lost)));
    check_with(&[before.clone(), after.clone()], Some(&head), refused);
    check(&[before.clone(), after.clone()], refused);
    // Given from the restart on, the trail verifies, and says why it restarted.
    let summary = run(
        std::slice::from_ref(&after),
        HeadFile::Read(Path::new(HEAD), head.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        summary.starts[0].restart.map(|r| r.reason),
        Some(RestartReason::Truncated)
    );
    let message = Problem::RestartedAfterLoss(lost).to_string();
    assert!(
        message.contains("records after seq 2 of the file before"),
        "{message}"
    );

    for reason in ["head_missing", "head_damaged"] {
        let headless = [vec![restart(reason, "")], trail(KEY, &Link::genesis(), 0)].concat();
        let head = head_naming(KEY, headless.last());
        let parsed: RestartReason = serde_json::from_value(reason.into()).unwrap();
        check_with(
            &[before.clone(), headless.clone()],
            Some(&head),
            Err(("audit.log.1", 1, Problem::RestartedWithoutHead(parsed))),
        );
        // `--no-head` accepts an end that cannot be proven.
        check(&[before.clone(), headless], Ok(4));
    }
    // A damaged tail shows in the file before, as it always did; the restart itself passes.
    let damaged = vec![restart("damaged_tail", "")];
    check(&[before, damaged], Ok(4));
}

fn open_link(line: &str) -> Link {
    chain::open(&MacKey::new(KEY), line.trim_end())
        .unwrap()
        .next()
}
