//! Regression tests of the log's integrity checks: per-line checksums, the backward scan's cost on
//! huge lines, and the cross-process writer lock.

use std::ops::ControlFlow;

use super::*;
use crate::log::lines::scan_lines_backward_costed;

/// Writes five entries and returns the directory and the branch file.
async fn five_entries() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = open_main(dir.path());
    for i in 1..=5 {
        log.append(draft(&format!("e{i}"))).await.unwrap();
    }
    log.close().await.unwrap();
    let path = log.path().to_path_buf();
    (dir, path)
}

/// Checks that every way of reading the branch reports damage on `line`, with `needle` in the reason.
fn assert_damaged_at(dir: &Path, path: &Path, line: u64, needle: &str) {
    let reader = LogReader::<T>::open(dir, "main").unwrap();
    let errors = [
        reader.replay(None, |_| {}).unwrap_err(),
        reader.read_range(1, 5).unwrap_err(),
        reader.tail(5).unwrap_err(),
    ];
    for error in errors {
        match &error {
            LogError::Damaged {
                path: p,
                line: l,
                reason,
            } => {
                assert_eq!(p, path);
                assert_eq!(*l, line, "{error}");
                assert!(reason.contains(needle), "{error}");
                assert!(
                    error
                        .to_string()
                        .contains(&format!("main.jsonl line {line}: ")),
                    "{error}"
                );
            }
            other => panic!("expected Damaged, got {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_line_that_is_still_valid_json_is_reported_with_file_and_line() {
    bounded(async {
        let (dir, path) = five_entries().await;
        let original = file_lines(&path);
        // Entry 3 is on line 4. One byte changes ("e3" becomes "e9"); the JSON stays valid and would
        // replay as a different intent without the checksum.
        let altered = original[3].replace(r#""text":"e3""#, r#""text":"e9""#);
        assert_ne!(altered, original[3]);
        serde_json::from_str::<serde_json::Value>(&altered).expect("still valid JSON");
        replace_line(&path, 4, &altered);
        assert_damaged_at(dir.path(), &path, 4, "checksum does not match");

        // A changed checksum digit is caught the same way.
        let mut digits = original[3].clone().into_bytes();
        let at = digits.len() - 3;
        digits[at] = if digits[at] == b'0' { b'1' } else { b'0' };
        replace_line(&path, 4, &String::from_utf8(digits).unwrap());
        assert_damaged_at(dir.path(), &path, 4, "checksum does not match");

        // So is a checksum field whose name or value was damaged into something still valid JSON.
        replace_line(&path, 4, &original[3].replace(r#","ck":""#, r#","cj":""#));
        assert_damaged_at(dir.path(), &path, 4, "unknown field `cj`");
        let at = original[3].len() - 4;
        let mut bad = original[3].clone();
        bad.replace_range(at..at + 1, "g");
        replace_line(&path, 4, &bad);
        assert_damaged_at(dir.path(), &path, 4, "not eight lowercase hex digits");
        let moved = original[3].replacen(r#"{"v":2,"#, r#"{"ck":"00000000","v":2,"#, 1);
        let moved = moved[..moved.rfind(r#","ck":"#).unwrap()].to_string() + "}";
        replace_line(&path, 4, &moved);
        assert_damaged_at(dir.path(), &path, 4, "not in its place");

        // Removing the checksum field from a line that follows checksummed ones is caught by replay.
        let cut = original[3].rfind(r#","ck":""#).unwrap();
        replace_line(&path, 4, &format!("{}}}", &original[3][..cut]));
        let (line, reason) = replay_damage(dir.path());
        assert_eq!(line, 4);
        assert!(
            reason.contains("has no checksum, though earlier lines"),
            "{reason}"
        );

        // Restoring the line restores the log.
        replace_line(&path, 4, &original[3]);
        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        assert_eq!(
            texts(&reader.read_range(1, 5).unwrap()),
            ["e1", "e2", "e3", "e4", "e5"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_written_before_checksums_still_read_and_appends_after_them_carry_one() {
    bounded(async {
        let (dir, path) = five_entries().await;
        // Strip the checksum of every record, as a log written by an earlier Tavern has none.
        let lines = file_lines(&path);
        let mut legacy = vec![lines[0].clone()];
        for line in &lines[1..] {
            let cut = line
                .rfind(r#","ck":""#)
                .expect("every record has a checksum");
            legacy.push(format!("{}}}", &line[..cut]));
        }
        std::fs::write(&path, legacy.join("\n") + "\n").unwrap();

        let log = open_main(dir.path());
        assert_eq!(log.last_seq(), 5);
        log.append(draft("e6")).await.unwrap();
        log.close().await.unwrap();
        let reader = LogReader::<T>::open(dir.path(), "main").unwrap();
        assert_eq!(
            texts(&reader.read_range(1, 6).unwrap()),
            ["e1", "e2", "e3", "e4", "e5", "e6"]
        );
        assert_eq!(entry_seqs(&replay_all(&reader, None)), [1, 2, 3, 4, 5, 6]);
        let last = file_lines(&path).pop().unwrap();
        assert!(last.contains(r#","ck":""#), "{last}");
    })
    .await;
}

#[test]
fn a_backward_scan_over_a_huge_line_reads_and_moves_each_byte_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines");
    let huge = 10 << 20;
    let mut contents = b"header\n".to_vec();
    contents.extend(std::iter::repeat_n(b'C', huge));
    contents.push(b'\n');
    contents.extend_from_slice(b"short\n");
    std::fs::write(&path, &contents).unwrap();
    let file = std::fs::File::open(&path).unwrap();

    let mut seen = Vec::new();
    let (found, cost) =
        scan_lines_backward_costed::<()>(&file, &path, 7, contents.len() as u64, |offset, line| {
            seen.push((offset, line.len()));
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(found, None);
    assert_eq!(seen, [(7 + huge as u64 + 1, 5), (7, huge)]);
    let range = contents.len() as u64 - 7;
    // Every byte is read once; growing the buffer by doubling moves each byte at most about twice.
    // (Before, every 16 KiB chunk copied the whole line again: about 3 TB moved for a 10 MB line.)
    assert_eq!(cost.read, range);
    assert!(cost.moved <= 2 * range, "{cost:?}");
    assert!(cost.peak <= 3 * huge as u64, "{cost:?}");
}

#[test]
fn a_backward_scan_over_many_short_lines_holds_about_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines");
    let line = [b'x'; 99];
    let mut contents = Vec::new();
    for _ in 0..100_000 {
        contents.extend_from_slice(&line);
        contents.push(b'\n');
    }
    std::fs::write(&path, &contents).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let mut lines = 0;
    let (_, cost) =
        scan_lines_backward_costed::<()>(&file, &path, 0, contents.len() as u64, |_, l| {
            assert_eq!(l.len(), 99);
            lines += 1;
            Ok(ControlFlow::Continue(()))
        })
        .unwrap();
    assert_eq!(lines, 100_000);
    assert_eq!(cost.read, contents.len() as u64);
    // A tail of the whole 10 MB range never holds more than a few chunks at once.
    assert!(cost.peak <= 128 << 10, "{cost:?}");
    assert!(cost.moved <= contents.len() as u64, "{cost:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_backward_scan_sees_the_lines_a_forward_split_sees(
        lens in prop::collection::vec(0usize..70_000, 1..12),
        start in 0usize..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lines");
        let mut contents = vec![b'h'; start];
        let mut expected = Vec::new();
        for (i, len) in lens.iter().enumerate() {
            expected.push((contents.len() as u64, *len));
            contents.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, *len));
            contents.push(b'\n');
        }
        std::fs::write(&path, &contents).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut seen = Vec::new();
        scan_lines_backward_costed::<()>(&file, &path, start as u64, contents.len() as u64, |offset, line| {
            let at = offset as usize;
            assert_eq!(line, &contents[at..at + line.len()]);
            seen.push((offset, line.len()));
            Ok(ControlFlow::Continue(()))
        }).unwrap();
        seen.reverse();
        prop_assert_eq!(seen, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_is_refused_by_the_file_lock_itself() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open_main(dir.path());
        log.append(draft("first")).await.unwrap();
        // Another process opening the file would hold another open file description; so does this
        // one, and the lock refuses it however the file was reached.
        let other = std::fs::OpenOptions::new()
            .append(true)
            .open(log.path())
            .unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        log.close().await.unwrap();
        // Once the writer is closed the lock is free again.
        other.try_lock().unwrap();
        other.unlock().unwrap();
    })
    .await;
}
