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
