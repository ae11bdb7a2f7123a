//! Counts the requests made to an object store, by kind, so that the cost of bookkeeping
//! (listings, marker reads, progress files) can be measured and bounded: every store a
//! [`crate::StoreLocation`] opens is wrapped in a [`CountingStore`], and the location's
//! [`RequestCounts`] are shared by every handle cloned or derived from it.
//!
//! A listing is counted as one request per started page of [`LIST_PAGE`] entries, the page
//! size object_store asks cloud stores for (S3, GCS and Azure return at most 1,000 keys a page).
//! A multipart upload counts one `put` when it starts; its parts are not counted.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// Entries in one page of a cloud listing.
pub const LIST_PAGE: u64 = 1000;

/// Running counts of one store's requests.
#[derive(Debug, Default)]
pub struct RequestCounts {
    get: AtomicU64,
    head: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
}

impl RequestCounts {
    fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn tally(&self) -> RequestTally {
        RequestTally {
            get: self.get.load(Ordering::Relaxed),
            head: self.head.load(Ordering::Relaxed),
            put: self.put.load(Ordering::Relaxed),
            list: self.list.load(Ordering::Relaxed),
            delete: self.delete.load(Ordering::Relaxed),
            copy: self.copy.load(Ordering::Relaxed),
        }
    }
}

/// Requests by kind at one moment (or between two moments, see [`RequestTally::since`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTally {
    pub get: u64,
    pub head: u64,
    pub put: u64,
    pub list: u64,
    pub delete: u64,
    pub copy: u64,
}

impl RequestTally {
    /// Every request, whatever its kind.
    pub fn total(&self) -> u64 {
        self.get + self.head + self.put + self.list + self.delete + self.copy
    }

    /// The requests made after `earlier` was taken.
    pub fn since(&self, earlier: &RequestTally) -> RequestTally {
        RequestTally {
            get: self.get.saturating_sub(earlier.get),
            head: self.head.saturating_sub(earlier.head),
            put: self.put.saturating_sub(earlier.put),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
            copy: self.copy.saturating_sub(earlier.copy),
        }
    }

    /// The requests of both tallies (two stores, or two clients of one).
    pub fn plus(&self, other: &RequestTally) -> RequestTally {
        RequestTally {
            get: self.get + other.get,
            head: self.head + other.head,
            put: self.put + other.put,
            list: self.list + other.list,
            delete: self.delete + other.delete,
            copy: self.copy + other.copy,
        }
    }

    /// The counts with the names metrics label them by.
    pub fn by_op(&self) -> [(&'static str, u64); 6] {
        [
            ("get", self.get),
            ("head", self.head),
            ("put", self.put),
            ("list", self.list),
            ("delete", self.delete),
            ("copy", self.copy),
        ]
    }
}

/// An object store that counts the requests it passes on.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<RequestCounts>,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, counts: Arc<RequestCounts>) -> Self {
        Self { inner, counts }
    }

    /// Counts a listing by its pages as its entries go by.
    fn count_pages(
        &self,
        listing: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let counts = self.counts.clone();
        RequestCounts::add(&counts.list, 1);
        let mut entries = 0u64;
        listing
            .inspect(move |_| {
                entries += 1;
                if entries > 1 && (entries - 1).is_multiple_of(LIST_PAGE) {
                    RequestCounts::add(&counts.list, 1);
                }
            })
            .boxed()
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        RequestCounts::add(&self.counts.put, 1);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        RequestCounts::add(&self.counts.put, 1);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let counter = if options.head {
            &self.counts.head
        } else {
            &self.counts.get
        };
        RequestCounts::add(counter, 1);
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        RequestCounts::add(&self.counts.get, ranges.len() as u64);
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let counts = self.counts.clone();
        let counted = locations
            .inspect(move |_| RequestCounts::add(&counts.delete, 1))
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count_pages(self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count_pages(self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        RequestCounts::add(&self.counts.list, 1);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        RequestCounts::add(&self.counts.copy, 1);
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        RequestCounts::add(&self.counts.copy, 1);
        self.inner.rename_opts(from, to, options).await
    }
}
