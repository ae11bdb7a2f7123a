//! Integration tests of the store crate against the local file system through object_store.

mod commit;
mod hostile;
mod plan;
mod readers;
mod s3;

use std::path::Path;

use futures::StreamExt;
use rubricmill_core::{InputFormat, RawPayload};
use rubricmill_store::{ReadItem, list_inputs, plan_shards, read_shard};

/// What reading every shard of an input gave: records as (location, payload) and rejects as
/// (location, reason).
#[derive(Debug, Default)]
pub struct ReadAll {
    pub records: Vec<(String, RawPayload)>,
    pub rejects: Vec<(String, String)>,
    pub shards: usize,
}

pub async fn read_all(
    url: &str,
    format: Option<InputFormat>,
    per_shard: u64,
    max_record_bytes: u64,
) -> ReadAll {
    let inputs = list_inputs(url, format).await.unwrap();
    let shards = plan_shards(&inputs, per_shard).await.unwrap();
    let mut all = ReadAll {
        shards: shards.len(),
        ..ReadAll::default()
    };
    for shard in &shards {
        let mut items = read_shard(&inputs.location, shard, format, max_record_bytes);
        while let Some(item) = items.next().await {
            match item.unwrap() {
                ReadItem::Record(record) => {
                    let name = record.source.file.rsplit('/').next().unwrap().to_owned();
                    all.records
                        .push((format!("{name}:{}", record.source.location), record.payload));
                }
                ReadItem::Reject { source, reason, .. } => {
                    let name = source.file.rsplit('/').next().unwrap().to_owned();
                    all.rejects
                        .push((format!("{name}:{}", source.location), reason));
                }
            }
        }
    }
    all
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}
