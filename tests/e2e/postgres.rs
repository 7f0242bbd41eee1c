//! The throwaway PostgreSQL cluster the PostgreSQL tests run on: it
//! starts, answers queries, and commits durably as production does.

use e2e::postgres::{TempPostgres, connect};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throwaway_postgres_cluster_answers_queries_and_syncs_its_commits() {
    let pg = TempPostgres::start().expect("start PostgreSQL");
    let client = connect(&pg.url()).await.expect("connect");

    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("SELECT 1")
        .get(0);
    assert_eq!(one, 1);
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .expect("SHOW fsync")
        .get(0);
    assert_eq!(fsync, "on", "tests must commit as durably as production");

    let other = pg.create_database("another").expect("create a database");
    assert_eq!(
        other,
        format!("postgres://hub@127.0.0.1:{}/another", pg.port())
    );
    let other = connect(&other).await.expect("connect to the new database");
    let name: String = client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("current_database")
        .get(0);
    assert_eq!(name, "hub");
    let name: String = other
        .query_one("SELECT current_database()", &[])
        .await
        .expect("current_database")
        .get(0);
    assert_eq!(name, "another");
    assert!(
        pg.create_database("Not-Plain").is_err(),
        "a name that would need quoting is refused"
    );

    let data = std::path::PathBuf::from(
        client
            .query_one("SHOW data_directory", &[])
            .await
            .expect("SHOW data_directory")
            .get::<_, String>(0),
    );
    let url = pg.url();
    drop((client, other));
    drop(pg);
    assert!(!data.exists(), "dropping the cluster removes its files");
    assert!(
        connect(&url).await.is_err(),
        "dropping the cluster stops its server"
    );
}

/// How many migrations a hub database records, and its highest version.
async fn versions(url: &str) -> (i64, i64) {
    let client = connect(url).await.expect("connect");
    let row = client
        .query_one(
            "SELECT count(*), coalesce(max(version), 0) FROM schema_version",
            &[],
        )
        .await
        .expect("schema_version");
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_schema_migrates_once_under_racing_processes_and_refuses_a_newer_or_another_hub() {
    use sync_hub::storage::pg_schema::SCHEMA_VERSION;
    use sync_hub::storage::postgres::PostgresStorage;
    let pg = TempPostgres::shared().expect("start PostgreSQL");

    // Four processes starting at once on an empty database: each waits
    // for the migration lock, the first migrates, the others find nothing
    // to do.
    let url = pg.create_database("migrations").expect("create a database");
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStorage::connect(&url, Some("key-a")).await })
        })
        .collect();
    for racer in racers {
        racer.await.expect("task").expect("connect");
    }
    assert_eq!(versions(&url).await, (SCHEMA_VERSION, SCHEMA_VERSION));
    // Once more: nothing applied twice.
    PostgresStorage::connect(&url, Some("key-a"))
        .await
        .expect("connect again");
    PostgresStorage::connect(&url, None)
        .await
        .expect("administration connects without a key");
    assert_eq!(versions(&url).await, (SCHEMA_VERSION, SCHEMA_VERSION));

    // Another hub's key is refused, naming what to do.
    let refused = PostgresStorage::connect(&url, Some("key-b"))
        .await
        .expect_err("another hub's key");
    let said = std::error::Error::source(&refused).map_or(refused.to_string(), |s| s.to_string());
    assert!(
        said.contains("another key") && said.contains("hub.key"),
        "{said}"
    );

    // A database a newer hub wrote is refused and left as it is.
    let client = connect(&url).await.expect("connect");
    client
        .execute(
            "INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, 0)",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .expect("a newer version");
    let refused = PostgresStorage::connect(&url, Some("key-a"))
        .await
        .expect_err("a newer schema");
    let said = std::error::Error::source(&refused).map_or(refused.to_string(), |s| s.to_string());
    assert!(said.contains("newer sync-hub"), "{said}");
    assert_eq!(
        versions(&url).await,
        (SCHEMA_VERSION + 1, SCHEMA_VERSION + 1)
    );
}
