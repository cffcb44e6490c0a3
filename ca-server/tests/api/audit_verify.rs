//! Tamper evidence: `verify_database` and `tpa-ca audit verify` name the first
//! bad seq after an edit, a deletion, a swap or a truncation of the trail made
//! directly in the database (with the append-only triggers dropped or, on
//! PostgreSQL, switched off first, as an attacker with file or superuser
//! access would), and after an edit of an export file.

use ca_server::commands::verify_database;
use ca_server::store;
use ca_server::store::sql::Engine;
use ca_server::store::sql::Sql as _;
use tpa_core::audit::{ChainBreak, Event};

use crate::helpers::{Fixture, count, ed25519_public_key, run, tpa_ca, valid_input};

/// A trail of five events: 1 `ca.init`, 2 and 3 issuances, 4 a denial, 5 an issuance.
fn trail() -> Fixture {
    trail_in(Fixture::new())
}

/// [`trail`] in `f`.
fn trail_in(mut f: Fixture) -> Fixture {
    f.issue_many(2);
    let mut bad = valid_input(ed25519_public_key());
    bad.principals = vec!["prod-*".to_owned()];
    f.issue(&bad).unwrap_err();
    f.issue_many(1);
    assert_eq!(count(&f.conn, "audit_events"), 5);
    assert_eq!(count(&f.conn, "certificates"), 3);
    let report = verify_database(&f.conn).unwrap().unwrap();
    assert_eq!(report.events, 5);
    f
}

/// Runs `sql` on a plain connection after switching off the append-only
/// triggers and the foreign keys: dropped on SQLite, and on PostgreSQL the
/// session's triggers (which carry the foreign keys too) off as a superuser
/// can.
fn tamper(f: &Fixture, sql: &str) {
    let conn = f.data.open_plain();
    conn.batch(match f.data.engine() {
        Engine::Sqlite => {
            "PRAGMA foreign_keys = OFF;
             DROP TRIGGER audit_events_append_only_update;
             DROP TRIGGER audit_events_append_only_delete;"
        }
        Engine::Postgres => "SET session_replication_role = replica",
    });
    conn.batch(sql);
}

fn broken(f: &Fixture) -> ChainBreak {
    match verify_database(&f.conn).unwrap() {
        Ok(report) => panic!("tampering not detected: {report:?}"),
        Err(b) => b,
    }
}

fn events(f: &Fixture) -> Vec<Event> {
    let mut out = Vec::new();
    store::audit::for_each(&f.conn, |e| {
        out.push(e);
        Ok(())
    })
    .unwrap();
    out
}

#[test]
fn the_append_only_triggers_refuse_plain_sql() {
    let f = trail();
    let conn = f.data.open_plain();
    for sql in [
        "UPDATE audit_events SET reason = 'nothing happened' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 5",
    ] {
        let e = conn.execute(sql, &[]).unwrap_err();
        assert!(e.to_string().contains("append-only"), "{sql}: {e}");
    }
    assert!(verify_database(&f.conn).unwrap().is_ok());
}

#[test]
fn an_edited_field_is_named_by_its_seq() {
    for (sql, seq) in [
        (
            "UPDATE audit_events SET reason = 'routine' WHERE seq = 3",
            3,
        ),
        (
            "UPDATE audit_events SET actor = 'admin:someone' WHERE seq = 2",
            2,
        ),
        (
            "UPDATE audit_events SET outcome = 'success' WHERE seq = 4",
            4,
        ),
        (
            "UPDATE audit_events SET time = '2020-01-01T00:00:00.000000Z' WHERE seq = 5",
            5,
        ),
        (
            "UPDATE audit_events SET details = replace(details, 'deploy', 'root') WHERE seq = 2",
            2,
        ),
        ("UPDATE audit_events SET seq = 9 WHERE seq = 5", 5),
    ] {
        let f = trail();
        tamper(&f, sql);
        let b = broken(&f);
        assert_eq!(b.seq, seq, "{sql}: {b}");
        assert!(b.to_string().contains(&format!("seq {seq}")), "{b}");
    }
}

#[test]
fn an_edit_with_a_recomputed_hash_is_found_at_the_next_event() {
    let f = trail();
    let mut third = events(&f).remove(2);
    third.reason = "routine maintenance".to_owned();
    let hash = third.compute_hash().unwrap();
    tamper(
        &f,
        &format!(
            "UPDATE audit_events SET reason = 'routine maintenance', hash = '{hash}' WHERE seq = 3"
        ),
    );

    let b = broken(&f);

    assert_eq!(b.seq, 4, "{b}");
    assert!(b.problem.contains("prev_hash"), "{b}");
}

#[test]
fn a_deleted_middle_event_is_named() {
    let f = trail();
    tamper(&f, "DELETE FROM audit_events WHERE seq = 3");

    let b = broken(&f);

    assert_eq!(b.seq, 3, "{b}");
    assert!(b.problem.contains("deleted"), "{b}");
}

#[test]
fn swapped_events_are_named_at_the_first() {
    let f = trail();
    // Swap every column but seq between events 2 and 3 (hash is UNIQUE, so via a placeholder).
    let columns = "time, actor, source, action, object, outcome, reason, details, prev_hash";
    tamper(
        &f,
        &format!(
            "CREATE TEMP TABLE saved AS SELECT * FROM audit_events WHERE seq IN (2, 3);
             UPDATE audit_events SET hash = 'placeholder' WHERE seq = 2;
             UPDATE audit_events SET ({columns}, hash) =
                 (SELECT {columns}, hash FROM saved WHERE seq = 2) WHERE seq = 3;
             UPDATE audit_events SET ({columns}, hash) =
                 (SELECT {columns}, hash FROM saved WHERE seq = 3) WHERE seq = 2;"
        ),
    );
    let after = events(&f);
    assert_eq!(after[1].action, "cert.issue");
    assert_ne!(after[1].hash, after[2].prev_hash, "the rows were swapped");

    let b = broken(&f);

    assert_eq!(b.seq, 2, "{b}");
}

#[test]
fn a_truncated_tail_is_found_through_the_certificates() {
    let f = trail();
    tamper(&f, "DELETE FROM audit_events WHERE seq >= 4");

    let b = broken(&f);

    assert_eq!(b.seq, 4, "{b}");
    assert!(b.problem.contains("truncated"), "{b}");
    assert!(b.problem.contains("seq 5"), "{b}");
}

#[test]
fn a_forged_event_appended_without_the_chain_is_named() {
    let f = trail();
    tamper(
        &f,
        "INSERT INTO audit_events (seq, time, actor, source, action, object, outcome, reason, details, prev_hash, hash)
         SELECT 6, time, actor, source, action, object, outcome, 'forged', details, 'abc', 'def'
         FROM audit_events WHERE seq = 5",
    );

    let b = broken(&f);

    assert_eq!(b.seq, 6, "{b}");
}

#[test]
fn export_then_verify_the_file_and_find_an_edit() {
    let f = trail();
    let config = f.data.config_path.clone();
    let head = events(&f).pop().unwrap().hash;

    let (code, export, stderr) = run(tpa_ca().args(["audit", "export", "--config"]).arg(&config));
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = export.lines().collect();
    assert_eq!(lines.len(), 5);
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i + 1);
    }

    let file = f.data.tmp.path().join("audit.jsonl");
    let verify_file = |text: &str| {
        std::fs::write(&file, text).unwrap();
        run(tpa_ca().args(["audit", "verify", "--file"]).arg(&file))
    };
    let (code, stdout, stderr) = verify_file(&export);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!("audit trail OK: 5 events, head {head}")
    );
    // issue 18: never "OK" alone for events no signature covers.
    assert!(
        stdout.contains("UNSIGNED: the last 5 events (seq 1..5) are covered by no signature"),
        "{stdout}"
    );

    // The database itself verifies the same way.
    let (code, stdout, _) = run(tpa_ca().args(["audit", "verify", "--config"]).arg(&config));
    assert_eq!(code, 0);
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!("audit trail OK: 5 events, head {head}")
    );
    assert!(
        stdout.contains("UNSIGNED: the last 5 events (seq 1..5)"),
        "{stdout}"
    );

    // Edit the reason of event 3 in the file.
    let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let mut third: serde_json::Value = serde_json::from_str(&edited[2]).unwrap();
    third["reason"] = "routine".into();
    edited[2] = third.to_string();
    let (code, _, stderr) = verify_file(&(edited.join("\n") + "\n"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("seq 3"), "{stderr}");

    // Drop event 2.
    let mut dropped: Vec<&str> = lines.clone();
    dropped.remove(1);
    let (code, _, stderr) = verify_file(&(dropped.join("\n") + "\n"));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("seq 2"), "{stderr}");

    // A line that is not an event.
    let mut garbage: Vec<&str> = lines.clone();
    garbage.insert(3, "{\"seq\": 4");
    let (code, _, stderr) = verify_file(&(garbage.join("\n") + "\n"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("seq 4") && stderr.contains("line 4"),
        "{stderr}"
    );
}

#[test]
fn audit_verify_of_a_tampered_database_exits_1_naming_the_seq() {
    let f = trail();
    tamper(
        &f,
        "UPDATE audit_events SET object = 'cert:1' WHERE seq = 3",
    );

    let (code, stdout, stderr) = run(tpa_ca()
        .args(["audit", "verify", "--config"])
        .arg(&f.data.config_path));

    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("audit trail BROKEN at seq 3"), "{stderr}");
    assert_eq!(stdout, "");
}

// Signed checkpoints (issue #7): the audit key signs the chain head; the trail
// is held against the checkpoints in the database, in the external checkpoint
// file and in exports.

mod checkpoints {
    use ca_server::audit::checkpoint::{self as audit_checkpoint, AuditKey};
    use ca_server::commands::{Checkpoints, verify_database_with};

    use super::*;
    use crate::helpers::valid_input;

    fn sign(f: &mut Fixture) -> audit_checkpoint::Checkpoint {
        let audit = f
            .data
            .config
            .audit
            .clone()
            .expect("init configures [audit]");
        let key = AuditKey::load(&audit.key_file).unwrap();
        let (c, new) = audit_checkpoint::make(
            &mut f.conn,
            &key,
            audit.checkpoint_file.as_deref(),
            chrono::Utc::now(),
        )
        .unwrap()
        .unwrap();
        assert!(new);
        c
    }

    fn denial(f: &mut Fixture) {
        let mut bad = valid_input(ed25519_public_key());
        bad.principals = vec!["prod-*".to_owned()];
        f.issue(&bad).unwrap_err();
    }

    fn verify_cli(f: &Fixture, extra: &[&str]) -> (i32, String, String) {
        run(tpa_ca()
            .args(["audit", "verify", "--config"])
            .arg(&f.data.config_path)
            .args(extra))
    }

    #[test]
    fn a_rewritten_and_rehashed_trail_is_caught_at_the_checkpoint() {
        let mut f = trail();
        sign(&mut f);
        // Rewrite event 3 and recompute every hash after it: the chain alone is valid again.
        let mut all = events(&f);
        all[2].reason = "routine maintenance".to_owned();
        let mut sql = String::new();
        for i in 2..all.len() {
            if i > 2 {
                all[i].prev_hash = all[i - 1].hash.clone();
            }
            all[i].hash = all[i].compute_hash().unwrap();
            sql += &format!(
                "UPDATE audit_events SET reason = '{}', prev_hash = '{}', hash = '{}' WHERE seq = {};",
                all[i].reason.replace('\'', "''"),
                all[i].prev_hash,
                all[i].hash,
                all[i].seq
            );
        }
        tamper(&f, &sql);
        assert!(
            verify_database(&f.conn).unwrap().is_ok(),
            "the chain alone cannot see it"
        );

        let (code, _, stderr) = verify_cli(&f, &[]);

        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("BROKEN at seq 5"), "{stderr}");
        assert!(stderr.contains("rewritten"), "{stderr}");
    }

    #[test]
    fn truncation_back_past_a_checkpoint_is_caught() {
        let mut f = trail();
        denial(&mut f);
        denial(&mut f);
        let c = sign(&mut f);
        assert_eq!(c.seq, 7);
        // Events 6 and 7 name no certificate: only the checkpoint can tell.
        tamper(&f, "DELETE FROM audit_events WHERE seq >= 6");

        let (code, _, stderr) = verify_cli(&f, &[]);

        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("BROKEN at seq 6"), "{stderr}");
        assert!(stderr.contains("covers seq 7"), "{stderr}");
        assert!(stderr.contains("truncated"), "{stderr}");
    }

    #[test]
    fn restoring_an_older_copy_after_a_checkpoint_is_caught_by_the_checkpoint_file() {
        // SQLite only, whatever the run's engine: the older copy is the
        // database file put back (on PostgreSQL a restored backup is the
        // operator's, and the same checkpoint file catches it).
        let mut f = trail_in(Fixture::sqlite());
        let old = f.data.tmp.path().join("old.db");
        f.conn.exec("VACUUM INTO ?1", &[&old.to_str().unwrap()]);
        denial(&mut f);
        denial(&mut f);
        let (code, stdout, stderr) = run(tpa_ca()
            .args(["audit", "checkpoint", "--config"])
            .arg(&f.data.config_path));
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("signed checkpoint: seq 7"), "{stdout}");
        let (code, stdout, stderr) = verify_cli(&f, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains(
                "checkpoints OK: 1 signed checkpoints match the trail; the latest covers seq 7"
            ),
            "the same checkpoint in the database and the file counts once: {stdout}"
        );

        // Put the older copy back, as someone hiding events 6 and 7 would.
        let Fixture { data, conn, .. } = f;
        drop(conn);
        let db = data.db_path();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        std::fs::copy(&old, &db).unwrap();
        let f = Fixture::over(data);

        let (code, _, stderr) = verify_cli(&f, &[]);

        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("BROKEN at seq 6"), "{stderr}");
        assert!(stderr.contains("older copy restored"), "{stderr}");
        assert!(stderr.contains("audit_checkpoints.jsonl"), "{stderr}");

        // The documented limit: without a checkpoint kept outside the
        // database, the older copy is a valid (shorter) trail.
        std::fs::remove_file(f.data.dir.join("audit_checkpoints.jsonl")).unwrap();
        let (code, _, stderr) = verify_cli(&f, &[]);
        assert_eq!(code, 0, "{stderr}");
    }

    // Review of issue 18: the configured checkpoint file was read only "when
    // it exists", so deleting it along with restoring an older database
    // (whose own checkpoints match it) passed silently.
    #[test]
    fn a_missing_checkpoint_file_fails_when_the_database_holds_checkpoints() {
        let mut f = trail();
        sign(&mut f);
        let file = f.data.dir.join("audit_checkpoints.jsonl");
        assert!(file.exists());
        std::fs::remove_file(&file).unwrap();

        let (code, _, stderr) = verify_cli(&f, &[]);

        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains("audit_checkpoints.jsonl"), "{stderr}");
        assert!(stderr.contains("is missing"), "{stderr}");
    }

    #[test]
    fn a_forged_checkpoint_is_refused() {
        let mut f = trail();
        let c = sign(&mut f);
        let other_dir = tempfile::tempdir().unwrap();
        let other = other_dir.path().join("k");
        audit_checkpoint::generate(&other).unwrap();
        let forged = AuditKey::load(&other)
            .unwrap()
            .sign(c.seq, &c.hash, &c.time)
            .unwrap();
        let file = f.data.tmp.path().join("forged.jsonl");
        std::fs::write(&file, format!("{}\n", forged.to_json())).unwrap();

        let (code, _, stderr) = verify_cli(&f, &["--checkpoints", file.to_str().unwrap()]);

        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("forged or altered checkpoint"), "{stderr}");

        // In-process: the same checkpoints without the right key are refused too.
        let mut held = Checkpoints::default();
        held.add(forged, "test");
        let public = audit_checkpoint::read_public_key(
            &f.data.config.audit.clone().unwrap().public_key_file(),
        )
        .unwrap();
        assert!(
            verify_database_with(&f.conn, &held, Some(&public))
                .unwrap()
                .is_err()
        );
    }

    // Security review 2026-11-24: an export rewritten and re-hashed, with its
    // checkpoint lines removed, passed `verify --file --public-key` as "OK".
    #[test]
    fn an_export_without_its_checkpoints_fails_when_a_public_key_is_given() {
        let mut f = trail();
        sign(&mut f);
        let public = f.data.config.audit.clone().unwrap().public_key_file();
        let (code, export, stderr) = run(tpa_ca()
            .args(["audit", "export", "--config"])
            .arg(&f.data.config_path));
        assert_eq!(code, 0, "{stderr}");
        // Drop the checkpoint and rewrite the last event with a valid hash.
        let mut lines: Vec<String> = export
            .lines()
            .filter(|l| !l.starts_with("{\"checkpoint\":"))
            .map(str::to_owned)
            .collect();
        let last = lines.pop().unwrap();
        let mut e: serde_json::Value = serde_json::from_str(&last).unwrap();
        e["reason"] = "routine".into();
        let mut ev = tpa_core::audit::Event::from_export_line(&e.to_string()).unwrap();
        ev.hash = ev.compute_hash().unwrap();
        lines.push(tpa_core::audit::canonical_json(&ev.to_json(true)).unwrap());
        let file = f.data.tmp.path().join("stripped.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();

        let (code, _, stderr) = run(tpa_ca()
            .args(["audit", "verify", "--file"])
            .arg(&file)
            .arg("--public-key")
            .arg(&public));
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("no signed checkpoint"), "{stderr}");
        // Without a key it is checked as a hash chain only, and says so by
        // printing no checkpoint line.
        let (code, stdout, stderr) = run(tpa_ca().args(["audit", "verify", "--file"]).arg(&file));
        assert_eq!(code, 0, "{stderr}");
        assert!(!stdout.contains("checkpoints OK"), "{stdout}");
        // A database with checkpoints still verifies with an explicit key.
        let (code, stdout, stderr) = verify_cli(&f, &["--public-key", public.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("checkpoints OK"), "{stdout}");
    }

    // Security review 2026-11-24: a checkpoint line made invalid JSON was
    // skipped, so the events it signed could be rewritten unnoticed.
    #[test]
    fn a_damaged_checkpoint_line_is_not_skipped() {
        let mut f = trail();
        sign(&mut f);
        denial(&mut f);
        sign(&mut f);
        let public = f.data.config.audit.clone().unwrap().public_key_file();
        let (code, export, stderr) = run(tpa_ca()
            .args(["audit", "export", "--config"])
            .arg(&f.data.config_path));
        assert_eq!(code, 0, "{stderr}");
        let mut lines: Vec<String> = export.lines().map(str::to_owned).collect();
        let checkpoints: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].starts_with("{\"checkpoint\":"))
            .collect();
        assert_eq!(checkpoints.len(), 2, "{export}");
        // Rewrite the last event (the second checkpoint signed it) and damage
        // that checkpoint's line.
        let last = checkpoints[0] - 1;
        let mut e: serde_json::Value = serde_json::from_str(&lines[last]).unwrap();
        e["reason"] = "routine".into();
        let mut ev = tpa_core::audit::Event::from_export_line(&e.to_string()).unwrap();
        ev.hash = ev.compute_hash().unwrap();
        lines[last] = tpa_core::audit::canonical_json(&ev.to_json(true)).unwrap();
        let second = checkpoints[1];
        lines[second] = lines[second].replacen(":{", ":", 1);
        let file = f.data.tmp.path().join("damaged.jsonl");
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();

        let (code, stdout, stderr) = run(tpa_ca()
            .args(["audit", "verify", "--file"])
            .arg(&file)
            .arg("--public-key")
            .arg(&public));
        assert_ne!(code, 0, "{stdout}");
        assert!(stderr.contains("not valid JSON"), "{stderr}");
    }

    #[test]
    fn a_partial_export_verifies_with_its_checkpoints_and_catches_an_edit() {
        let mut f = trail();
        let c = sign(&mut f);
        let times: Vec<String> = events(&f).iter().map(|e| e.time.clone()).collect();
        let config = f.data.config_path.clone();
        let public = f.data.config.audit.clone().unwrap().public_key_file();

        let (code, export, stderr) = run(tpa_ca()
            .args(["audit", "export", "--since", &times[1], "--config"])
            .arg(&config));
        assert_eq!(code, 0, "{stderr}");
        let lines: Vec<&str> = export.lines().collect();
        assert_eq!(
            lines.len(),
            5,
            "events 2..5 and the checkpoint at 5: {export}"
        );
        assert!(lines[4].starts_with("{\"checkpoint\":"), "{}", lines[4]);
        let file = f.data.tmp.path().join("part.jsonl");
        std::fs::write(&file, &export).unwrap();

        let (code, _, stderr) = run(tpa_ca().args(["audit", "verify", "--file"]).arg(&file));
        assert_eq!(code, 2, "checkpoints need --public-key: {stderr}");
        assert!(stderr.contains("--public-key"), "{stderr}");
        let verify = |path: &std::path::Path| {
            run(tpa_ca()
                .args(["audit", "verify", "--file"])
                .arg(path)
                .arg("--public-key")
                .arg(&public))
        };
        let (code, stdout, stderr) = verify(&file);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("4 events"), "{stdout}");
        assert!(stdout.contains("partial export from seq 2"), "{stdout}");
        assert!(stdout.contains("unsigned events at the end: 0"), "{stdout}");
        assert!(
            stdout.contains(&format!("covers seq {}", c.seq)),
            "{stdout}"
        );

        // An edit whose hash is recomputed is caught at the checkpoint.
        let mut edited: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        let mut e: serde_json::Value = serde_json::from_str(&edited[3]).unwrap();
        e["reason"] = "routine".into();
        let mut ev = tpa_core::audit::Event::from_export_line(&e.to_string()).unwrap();
        ev.hash = ev.compute_hash().unwrap();
        edited[3] = tpa_core::audit::canonical_json(&ev.to_json(true)).unwrap();
        std::fs::write(&file, edited.join("\n") + "\n").unwrap();
        let (code, _, stderr) = verify(&file);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("BROKEN at seq 5"), "{stderr}");

        // --until leaves the later events out.
        let (code, export, _) = run(tpa_ca()
            .args(["audit", "export", "--until", &times[2], "--config"])
            .arg(&config));
        assert_eq!(code, 0);
        assert_eq!(export.lines().count(), 2);
        let (code, _, stderr) = run(tpa_ca()
            .args(["audit", "export", "--since", "yesterday", "--config"])
            .arg(&config));
        assert_eq!(code, 1);
        assert!(stderr.contains("RFC 3339"), "{stderr}");
    }

    // Issue 18, finding 2: what an export plus checkpoints proves. Each
    // forgery of the issue: invented events chained from one genuine
    // checkpoint, a cut tail and a replaced tail after the last checkpoint.

    /// The audit public key file of the fixture.
    fn public_key(f: &Fixture) -> std::path::PathBuf {
        f.data.config.audit.clone().unwrap().public_key_file()
    }

    /// `tpa-ca audit export` of the fixture's whole trail, as lines.
    fn export_lines(f: &Fixture) -> Vec<String> {
        let (code, export, stderr) = run(tpa_ca()
            .args(["audit", "export", "--config"])
            .arg(&f.data.config_path));
        assert_eq!(code, 0, "{stderr}");
        export.lines().map(str::to_owned).collect()
    }

    /// An invented event at `seq`, chained from `prev_hash`, modelled on a
    /// genuine export line, with a correct hash of its own.
    fn invented(model: &str, seq: i64, prev_hash: &str, reason: &str) -> String {
        let mut e = tpa_core::audit::Event::from_export_line(model).unwrap();
        e.seq = seq;
        e.prev_hash = prev_hash.to_owned();
        e.reason = reason.to_owned();
        e.hash = e.compute_hash().unwrap();
        tpa_core::audit::canonical_json(&e.to_json(true)).unwrap()
    }

    fn hash_of(line: &str) -> String {
        tpa_core::audit::Event::from_export_line(line).unwrap().hash
    }

    fn verify_lines(
        f: &Fixture,
        name: &str,
        lines: &[String],
        extra: &[&str],
    ) -> (i32, String, String) {
        let file = f.data.tmp.path().join(name);
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        run(tpa_ca()
            .args(["audit", "verify", "--file"])
            .arg(&file)
            .arg("--public-key")
            .arg(public_key(f))
            .args(extra))
    }

    /// Before: one genuine checkpoint line (seq 5) plus three events
    /// invented at seq 6..8 and chained from its hash answered "audit trail
    /// OK … checkpoints OK", exit 0, though the checkpoint covers none of them.
    #[test]
    fn invented_events_chained_from_a_genuine_checkpoint_are_refused() {
        let mut f = trail();
        let c = sign(&mut f);
        assert_eq!(c.seq, 5);
        let lines = export_lines(&f);
        let checkpoint_line = lines
            .iter()
            .find(|l| l.starts_with("{\"checkpoint\":"))
            .unwrap()
            .clone();
        let model = &lines[4];
        let mut forged = vec![checkpoint_line];
        let mut prev = c.hash.clone();
        for seq in 6..=8 {
            let line = invented(model, seq, &prev, "nothing to see");
            prev = hash_of(&line);
            forged.push(line);
        }

        let (code, stdout, stderr) = verify_lines(&f, "forged.jsonl", &forged, &[]);

        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(!stdout.contains("OK"), "{stdout}");
        assert!(stderr.contains("BROKEN at seq 6"), "{stderr}");
        assert!(
            stderr.contains("no signed checkpoint covers an event of this trail"),
            "{stderr}"
        );
    }

    /// Events after the last checkpoint are covered by no signature: a cut
    /// tail verifies as a hash chain, but the output says how many events
    /// are unsigned, `--require-signed-tail` fails, and the external
    /// checkpoint file that saw a later checkpoint shows the cut.
    #[test]
    fn a_cut_tail_after_the_last_checkpoint_is_reported_and_can_fail() {
        let mut f = trail();
        sign(&mut f);
        denial(&mut f);
        denial(&mut f);
        let lines = export_lines(&f);
        assert_eq!(lines.len(), 8, "7 events and the checkpoint at 5");
        // Cut event 7 (the checkpoint line stays).
        let mut cut = lines.clone();
        cut.remove(6);

        let (code, stdout, stderr) = verify_lines(&f, "cut.jsonl", &cut, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("the latest covers seq 5"), "{stdout}");
        assert!(
            stdout.contains("UNSIGNED: the last 1 events (seq 6..6) are covered by no signature"),
            "{stdout}"
        );
        let (code, _, stderr) = verify_lines(&f, "cut.jsonl", &cut, &["--require-signed-tail"]);
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("NOT FULLY SIGNED"), "{stderr}");
        // The whole export is unsigned after seq 5 too, and says so.
        let (code, stdout, _) = verify_lines(&f, "whole.jsonl", &lines, &["--require-signed-tail"]);
        assert_eq!(code, 1, "{stdout}");

        // A later checkpoint (seq 7) in the external file shows the cut.
        sign(&mut f);
        let external = f.data.dir.join("audit_checkpoints.jsonl");
        let (code, _, stderr) = verify_lines(
            &f,
            "cut.jsonl",
            &cut,
            &["--checkpoints", external.to_str().unwrap()],
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("covers seq 7"), "{stderr}");
        assert!(stderr.contains("truncated"), "{stderr}");
        // And the full export, signed to its end, passes the strict check.
        let signed = export_lines(&f);
        let (code, stdout, stderr) = verify_lines(
            &f,
            "signed.jsonl",
            &signed,
            &[
                "--require-signed-tail",
                "--checkpoints",
                external.to_str().unwrap(),
            ],
        );
        assert_eq!(code, 0, "{stderr}");
        assert!(stdout.contains("unsigned events at the end: 0"), "{stdout}");
    }

    /// The tail after the last checkpoint replaced by invented events
    /// chained from the last signed one: reported as unsigned, refused with
    /// `--require-signed-tail`, and caught by a later external checkpoint.
    #[test]
    fn a_replaced_tail_after_the_last_checkpoint_is_reported_and_can_fail() {
        let mut f = trail();
        let c = sign(&mut f);
        denial(&mut f);
        denial(&mut f);
        let lines = export_lines(&f);
        let mut replaced: Vec<String> = lines[..5].to_vec();
        let mut prev = c.hash.clone();
        for seq in 6..=7 {
            let line = invented(&lines[4], seq, &prev, "routine");
            prev = hash_of(&line);
            replaced.push(line);
        }
        replaced.push(lines[7].clone());
        assert!(replaced[7].starts_with("{\"checkpoint\":"));

        let (code, stdout, stderr) = verify_lines(&f, "replaced.jsonl", &replaced, &[]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains("UNSIGNED: the last 2 events (seq 6..7)"),
            "{stdout}"
        );
        let (code, _, stderr) =
            verify_lines(&f, "replaced.jsonl", &replaced, &["--require-signed-tail"]);
        assert_eq!(code, 1, "{stderr}");

        sign(&mut f);
        let external = f.data.dir.join("audit_checkpoints.jsonl");
        let (code, _, stderr) = verify_lines(
            &f,
            "replaced.jsonl",
            &replaced,
            &["--checkpoints", external.to_str().unwrap()],
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(stderr.contains("BROKEN at seq 7"), "{stderr}");
        assert!(stderr.contains("rewritten"), "{stderr}");
    }
}
