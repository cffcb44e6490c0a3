//! The table list against both schemas (issue 15): a table added to either
//! engine's migrations and not to [`TABLES`] fails here, not in a copy that
//! silently leaves it behind.

use std::collections::BTreeSet;

use super::*;
use crate::store::engine::test_engines;

fn listed() -> BTreeSet<String> {
    TABLES.iter().map(|t| (*t).to_owned()).collect()
}

// issue 15: TABLES is exactly the set of tables in docs/schema.sql (which
// another test holds equal to the migrated SQLite database).
#[test]
fn the_table_list_is_every_table_of_docs_schema_sql() {
    let docs = include_str!("../../../../docs/schema.sql");
    let in_docs: BTreeSet<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("CREATE TABLE "))
        .filter_map(|rest| rest.split([' ', '(']).next())
        .filter(|name| !name.starts_with("sqlite_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(listed(), in_docs);
}

// issue 15: TABLES is every table of both migrated databases (besides the
// engines' own bookkeeping), with the same columns on both.
#[test]
fn the_table_list_is_every_table_of_both_engines_with_the_same_columns() {
    let engines = test_engines();
    let mut columns = Vec::new();
    for (engine, conn, _dir) in &engines {
        let sql = match engine {
            Engine::Sqlite => {
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            }
            Engine::Postgres => {
                "SELECT tablename::text FROM pg_tables
                 WHERE schemaname = current_schema() AND tablename <> 'tpa_schema'"
            }
        };
        let tables: BTreeSet<String> = conn
            .query_vec(sql, &[], |r| r.get(0))
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(tables, listed(), "{engine:?}");
        let mut of_engine = Vec::new();
        for table in TABLES {
            of_engine.push(match engine {
                Engine::Sqlite => sqlite_columns(conn, table).unwrap(),
                Engine::Postgres => {
                    let mut names: Vec<String> = postgres_columns(conn, table)
                        .unwrap()
                        .into_iter()
                        .map(|(n, _)| n)
                        .collect();
                    names.sort();
                    names
                }
            });
        }
        columns.push(of_engine);
    }
    for (index, table) in TABLES.iter().enumerate() {
        assert_eq!(columns[0][index], columns[1][index], "columns of {table}");
    }
}

// issue 15: every table comes after the tables its foreign keys name, so
// the copy inserts parents first.
#[test]
fn the_table_list_is_in_foreign_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let conn =
        crate::store::open(&dir.path().join("t.db"), crate::store::Create::IfMissing).unwrap();
    for (position, table) in TABLES.iter().enumerate() {
        let parents: Vec<String> = conn
            .query_vec(
                "SELECT \"table\" FROM pragma_foreign_key_list(?1)",
                &[table],
                |r| r.get(0),
            )
            .unwrap();
        for parent in parents {
            let at = TABLES.iter().position(|t| *t == parent);
            assert!(
                at.is_some_and(|at| at < position),
                "{table} references {parent}, which must come before it"
            );
        }
    }
}

#[test]
fn batched_inserts_number_their_placeholders() {
    assert_eq!(
        insert_sql("heartbeat", &["id", "beats"], 2),
        "INSERT INTO heartbeat (\"id\", \"beats\") VALUES (?1, ?2), (?3, ?4)"
    );
}

// issue 15: more rows than one batch holds arrive whole, in several
// INSERTs, with SQLite's integer flags as PostgreSQL booleans.
#[test]
fn copy_table_streams_in_batches_and_converts_flags() {
    let mut engines = test_engines().into_iter();
    let (_, mut sqlite, _dir) = engines.next().unwrap();
    let (_, mut postgres, _) = engines.next().unwrap();
    let now = chrono::Utc::now();
    sqlite
        .write(|tx| {
            for i in 0..(MAX_ROWS * 2 + 3) {
                crate::store::outbox::enqueue(tx, "k", &format!("{{\"n\":{i}}}"), now)?;
            }
            tx.execute(
                "INSERT INTO auth_tokens (id, token_hash, kind, issuer, subject, username, groups,
                     created_at, expires_at, device_login)
                 VALUES ('t1', 'h1', 'api', 'local', 'alice', 'alice', '[]', 'a', 'b', 1),
                        ('t2', 'h2', 'api', 'local', 'bob', 'bob', '[]', 'a', 'b', 0)",
                &[],
            )?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    postgres
        .write(|tx| {
            assert_eq!(
                copy_table(&sqlite, tx, "outbox")?,
                (MAX_ROWS * 2 + 3) as u64
            );
            assert_eq!(copy_table(&sqlite, tx, "auth_tokens")?, 2);
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let payloads = |conn: &crate::store::Conn| -> Vec<(i64, String)> {
        conn.query_vec("SELECT id, payload FROM outbox ORDER BY id", &[], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    assert_eq!(payloads(&postgres), payloads(&sqlite));
    let flags: Vec<(String, bool)> = postgres
        .query_vec(
            "SELECT id, device_login FROM auth_tokens ORDER BY id",
            &[],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(flags, vec![("t1".into(), true), ("t2".into(), false)]);
}
