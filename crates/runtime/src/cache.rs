//! The LLM response cache in object storage: one small JSON object per answer under
//! `<cache>/<first two hex characters>/<key>.json`, shared by every worker and later job that
//! points at the same location.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rubricmill_llm::CacheStore;
use rubricmill_store::StoreLocation;

pub struct ObjectCache {
    location: StoreLocation,
}

impl ObjectCache {
    pub fn new(location: StoreLocation) -> Self {
        Self { location }
    }

    fn path(&self, key: &str) -> Path {
        let shard = key.get(..2).unwrap_or("00");
        self.location
            .path
            .clone()
            .join(shard)
            .join(format!("{key}.json"))
    }
}

#[async_trait::async_trait]
impl CacheStore for ObjectCache {
    async fn get(&self, key: &str) -> Option<Bytes> {
        let path = self.path(key);
        match self.location.store.get(&path).await {
            Ok(result) => match result.bytes().await {
                Ok(bytes) => Some(bytes),
                Err(error) => {
                    tracing::warn!(key, error = %error, "llm cache read failed, calling the model");
                    None
                }
            },
            Err(object_store::Error::NotFound { .. }) => None,
            Err(error) => {
                tracing::warn!(key, error = %error, "llm cache read failed, calling the model");
                None
            }
        }
    }

    async fn put(&self, key: &str, value: Bytes) {
        let path = self.path(key);
        if let Err(error) = self
            .location
            .store
            .put(&path, PutPayload::from(value))
            .await
        {
            tracing::warn!(key, error = %error, "llm cache write failed");
        }
    }
}
