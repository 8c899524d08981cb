//! The same lake read over S3 (the in-process `s3s-fs` server): discovery by listing with a
//! delimiter, storage options, and a current-state query.

use std::path::Path;

use walaudit::query::{LakeOptions, LakeQuery};

use super::{fixture, lines};
use crate::support::s3::S3Server;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lake_on_s3_is_queryable() {
    let lake = fixture().await;
    let server = S3Server::start("audit", 7).unwrap();
    copy_dir(Path::new(lake.path()), &server.object_path("lake"));

    let options = LakeOptions {
        storage_options: server.storage_options(),
        ..LakeOptions::default()
    };
    let session = LakeQuery::open(&server.url("lake"), options).await.unwrap();
    let names: Vec<String> = session
        .tables()
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    assert_eq!(
        names,
        ["_walaudit.transactions", "public.items", "public.orders"]
    );
    let got = lines(
        &session
            .collect("SELECT id, status FROM current.public.orders ORDER BY id")
            .await
            .unwrap(),
    );
    assert_eq!(got[3..5], ["| 1  | shipped |", "| 4  | moved   |"]);
}
