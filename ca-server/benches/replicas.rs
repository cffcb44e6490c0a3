//! `cargo bench -p ca-server --bench replicas`: certificate issuance through
//! the HTTP API with 64 concurrent keep-alive clients on three stores in one
//! run — SQLite with one server, PostgreSQL with one replica, PostgreSQL with
//! two replicas (the clients spread evenly over both) — each against raw
//! signing measured just before it; and the latency from an approver's final
//! decision on one replica to the answer of a client waiting on
//! `GET /api/v1/requests/{id}/wait` on the other (woken through PostgreSQL
//! `LISTEN/NOTIFY`).
//!
//! Everything runs on this machine on 127.0.0.1: a private PostgreSQL
//! (`support::postgres`, durable settings: `fsync`, `synchronous_commit` and
//! `full_page_writes` on), a fresh data directory per store made by `init`
//! (`init_data_dir_with`, so a PostgreSQL store is migrated as `tpa-ca init
//! --database-url` does) with the brief's roles and three accounts, the real
//! `Application`s on port 0 in this process (the replicas share its tokio
//! runtime), and the hand-written HTTP/1.1 clients of `support`. Each store
//! gets its own empty database. Bounded: issuance runs for `TPA_BENCH_SECS`
//! seconds (default 10) after a 1 s warm-up, decision latency for
//! `TPA_BENCH_ROUNDS` rounds (default 25; decisions are limited to 30 per
//! user per minute); `TPA_BENCH_CLIENTS` changes the number of clients
//! (default 64). `TPA_BENCH_PG` adds PostgreSQL settings (`name=value`,
//! space-separated) for experiments; the results print what the server ran
//! with. With `TPA_BENCH_PG="shared_preload_libraries=pg_stat_statements"`
//! each PostgreSQL run is followed by the statements it sent, most frequent
//! first (calls, mean execution time): the round trips per certificate.
//! At the end of each store: one certificate row per answered
//! certificate, and the audit chain verifies.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use ca_server::commands::{
    InitDatabase, InitOptions, init_data_dir, init_data_dir_with, verify_database,
};
use ca_server::config::{Config, DatabaseConfig, PostgresConfig};
use ca_server::server::Application;
use ca_server::signer::Signer;
use ca_server::store::{self, Create, sql::Sql};
use support::postgres::PgServer;
use support::{
    Latencies, Tokens, add_roles_and_accounts, decision_latency, env_number, http_issuance, ms,
    raw_signing,
};

/// What one store gave.
struct Figures {
    name: &'static str,
    signing: f64,
    rate: f64,
    latencies: Latencies,
    /// From the final approval's answer, and from the start of its POST.
    decision: (Latencies, Latencies),
    waiter: &'static str,
}

struct Knobs {
    clients: u64,
    secs: u64,
    rounds: u64,
}

/// Starts one `Application` per configuration (the replicas), measures
/// issuance with the clients spread over them and decision → waiting client
/// (decided on the first, waited on the last), stops them. Returns the
/// figures without the signing rate and how many certificates were answered.
async fn drive(
    configs: &[Config],
    knobs: &Knobs,
) -> anyhow::Result<(f64, Latencies, (Latencies, Latencies), usize)> {
    let mut addresses: Vec<SocketAddr> = Vec::new();
    let mut stops = Vec::new();
    let mut servers = Vec::new();
    for config in configs {
        let app = Application::build(config, Some("127.0.0.1:0".parse()?)).await?;
        addresses.push(app.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        servers.push(tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        })));
    }
    let outcome = async {
        // Logged in on the first replica: the tokens live in the database
        // and serve on every replica.
        let tokens = Tokens::login(addresses[0]).await?;
        let (rate, latencies, answered) = http_issuance(
            &addresses,
            &tokens,
            knobs.clients,
            Duration::from_secs(knobs.secs),
        )
        .await?;
        let waiting = *addresses.last().context("no replica")?;
        let decision = decision_latency(addresses[0], waiting, &tokens, knobs.rounds).await?;
        anyhow::Ok((rate, latencies, decision, answered))
    }
    .await;
    for stop in stops {
        let _ = stop.send(());
    }
    // A failed run says why before anything else.
    let outcome = outcome?;
    for server in servers {
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .context("a replica did not stop within 10 s")???;
    }
    Ok(outcome)
}

/// Measures one store: raw signing on its key, then `replicas` servers on
/// `config`; checks rows and chain afterwards.
fn measure(
    name: &'static str,
    config: &Config,
    replicas: usize,
    knobs: &Knobs,
) -> anyhow::Result<Figures> {
    let signer = Signer::load(&config.ca)?;
    let signing = raw_signing(&signer, Duration::from_secs(2))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let configs = vec![config.clone(); replicas];
    let (rate, latencies, decision, answered) = runtime.block_on(drive(&configs, knobs))?;
    drop(runtime);
    let figures = Figures {
        name,
        signing,
        rate,
        latencies,
        decision,
        waiter: if replicas > 1 {
            "other replica"
        } else {
            "same server"
        },
    };
    print_line(&figures);
    match &config.database {
        DatabaseConfig::Sqlite { path } => check(&store::open(path, Create::Never)?, answered),
        DatabaseConfig::Postgres(pg) => {
            let options = pg.options().map_err(anyhow::Error::msg)?;
            check(&store::pg::connect(&options)?, answered)
        }
    }?;
    Ok(figures)
}

/// One certificate row per answered certificate, and the audit chain verifies.
fn check(conn: &impl Sql, answered: usize) -> anyhow::Result<()> {
    let rows = usize::try_from(store::certificates::count(conn)?)?;
    ensure!(
        rows == answered,
        "{answered} certificates answered but {rows} certificate rows"
    );
    match verify_database(conn)? {
        Ok(report) => println!(
            "  audit chain verified: {} events, {rows} certificate rows",
            report.events
        ),
        Err(broken) => bail!("audit chain broken: {broken}"),
    }
    Ok(())
}

fn print_line(f: &Figures) {
    println!(
        "{}: {:.0} certs/s (p50 {}, p99 {}, max {}); raw signing {:.0} certs/s, ratio {:.3}; \
         decision → waiter on the {}: p50 {} (p99 {}) from the final approval's answer, p50 {} (p99 {}) from its POST",
        f.name,
        f.rate,
        ms(f.latencies.percentile(0.50)),
        ms(f.latencies.percentile(0.99)),
        ms(f.latencies.percentile(1.0)),
        f.signing,
        f.rate / f.signing,
        f.waiter,
        ms(f.decision.0.percentile(0.50)),
        ms(f.decision.0.percentile(0.99)),
        ms(f.decision.1.percentile(0.50)),
        ms(f.decision.1.percentile(0.99)),
    );
}

/// A data directory made by `init` on `database`, with the benchmark's
/// roles and accounts; its configuration.
fn data_dir(root: &Path, name: &str, database: &InitDatabase) -> anyhow::Result<Config> {
    let options = InitOptions {
        data_dir: root.join(name),
        passphrase_file: None,
        listen: "127.0.0.1:0".parse()?,
    };
    let config_path = match database {
        InitDatabase::Sqlite => init_data_dir(&options)?,
        InitDatabase::Postgres(_) => init_data_dir_with(&options, database)?,
    };
    add_roles_and_accounts(&config_path)?;
    Ok(Config::load(&config_path)?)
}

fn postgres(server: &mut PgServer) -> anyhow::Result<InitDatabase> {
    let (url, password_file) = server.database()?;
    Ok(InitDatabase::Postgres(PostgresConfig {
        url,
        password_file: Some(password_file),
        ca_file: None,
    }))
}

fn main() -> anyhow::Result<()> {
    let knobs = Knobs {
        clients: env_number("TPA_BENCH_CLIENTS", 64)?,
        secs: env_number("TPA_BENCH_SECS", 10)?,
        rounds: env_number("TPA_BENCH_ROUNDS", 25)?,
    };
    let extra = std::env::var("TPA_BENCH_PG").unwrap_or_default();
    let settings: Vec<&str> = extra.split_whitespace().collect();
    let mut server = PgServer::start(&settings)?;
    let shown = [
        "server_version",
        "fsync",
        "synchronous_commit",
        "full_page_writes",
        "wal_sync_method",
        "shared_buffers",
        "commit_delay",
    ]
    .iter()
    .map(|name| Ok(format!("{name}={}", server.show(name)?)))
    .collect::<anyhow::Result<Vec<_>>>()?;
    println!(
        "replica benchmark: {} clients, {} s each, {} decision rounds, {} CPUs; PostgreSQL {}",
        knobs.clients,
        knobs.secs,
        knobs.rounds,
        std::thread::available_parallelism().map_or(0, usize::from),
        shown.join(", "),
    );
    let root = tempfile::tempdir()?;
    let sqlite = data_dir(root.path(), "sqlite", &InitDatabase::Sqlite)?;
    let one = data_dir(root.path(), "pg-one", &postgres(&mut server)?)?;
    let two = data_dir(root.path(), "pg-two", &postgres(&mut server)?)?;
    // With pg_stat_statements preloaded (TPA_BENCH_PG), what each
    // PostgreSQL run sent, most frequent first.
    let profile = |server: &PgServer| -> anyhow::Result<()> {
        for line in server.top_statements(25)? {
            println!("  {line}");
        }
        Ok(())
    };
    profile(&server)?;
    let sqlite = measure("SQLite, one server", &sqlite, 1, &knobs)?;
    profile(&server)?;
    let pg_one = measure("PostgreSQL, one replica", &one, 1, &knobs)?;
    profile(&server)?;
    let pg_two = measure("PostgreSQL, two replicas", &two, 2, &knobs)?;
    profile(&server)?;
    let all = [sqlite, pg_one, pg_two];
    println!();
    println!(
        "| Store | certs/s | p50 | p99 | raw signing certs/s | ratio | decision → waiter p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in &all {
        println!(
            "| {} | {:.0} | {} | {} | {:.0} | {:.3} | {} ({}) |",
            f.name,
            f.rate,
            ms(f.latencies.percentile(0.50)),
            ms(f.latencies.percentile(0.99)),
            f.signing,
            f.rate / f.signing,
            ms(f.decision.1.percentile(0.50)),
            f.waiter,
        );
    }
    Ok(())
}
