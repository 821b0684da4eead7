use std::path::Path;

use super::*;
use crate::audit::chain::{GENESIS, seal};

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

#[track_caller]
fn check(files: &[Vec<String>], expected: Result<u64, (&str, usize, Problem)>) {
    let names: Vec<String> = (0..files.len()).map(|n| format!("audit.log.{n}")).collect();
    let contents: Vec<String> = files.iter().map(|lines| lines.concat()).collect();
    let given = names
        .iter()
        .zip(&contents)
        .map(|(name, content)| (Path::new(name.as_str()), content.as_bytes()));
    let got = verify(&MacKey::new(KEY), given)
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

#[test]
fn an_intact_trail_verifies_across_files() {
    let lines = trail(KEY, &Link::genesis(), 6);
    check(std::slice::from_ref(&lines), Ok(6));
    check(&[lines[..2].to_vec(), lines[2..].to_vec()], Ok(6));
    // Earlier files archived: the first record given anchors the chain, and says so.
    check(&[lines[3..].to_vec()], Ok(3));
    let rest = lines[3..].concat();
    let summary = verify(&MacKey::new(KEY), [(Path::new("b"), rest.as_bytes())]).unwrap();
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
    )
    .unwrap();
    assert_eq!(summary.records, 4);
    let starts: Vec<String> = summary.starts.iter().map(ToString::to_string).collect();
    assert_eq!(starts, ["a:1", "b:1"]);
}
