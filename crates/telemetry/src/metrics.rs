//! The registry of a process's metrics and the labelled families it hands out, on top of the
//! `prometheus-client` crate, which keeps the values and writes the OpenMetrics text format.
//!
//! Values are `f64`s kept in atomics, so updating a metric takes no lock. Looking a child up by
//! its label values ([`Family::with`]) takes the family's read lock; hot paths keep the returned
//! handle (a clone shares the value) instead of looking it up each time.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::metrics::family::{Family as ClientFamily, MetricConstructor};
use prometheus_client::registry::Metric;

/// A value that only goes up: events, bytes, seconds spent. Clones share the value.
pub type Counter = prometheus_client::metrics::counter::Counter<f64, AtomicU64>;
/// A value that goes up and down: shards in flight, queue depth. Clones share the value.
pub type Gauge = prometheus_client::metrics::gauge::Gauge<f64, AtomicU64>;
/// Observations counted into fixed buckets, with their sum and count. Clones share the values.
pub type Histogram = prometheus_client::metrics::histogram::Histogram;

/// Label names and values of one child, in the family's order.
type LabelSet = Vec<(String, String)>;
/// A callback run before each render.
type ScrapeCallback = Arc<dyn Fn() + Send + Sync>;

/// Locks `mutex`, also after a panic elsewhere: every update here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Raising a counter to a monotone total kept elsewhere.
pub trait CounterExt {
    /// Raises the counter to `total` (a usage meter, a queue's delivery count); a total below
    /// the current value, or NaN, leaves it as it is. Call it from one place at a time, e.g. a
    /// scrape callback ([`Registry::render`] runs those one render at a time).
    fn set_total(&self, total: f64);
}

impl CounterExt for Counter {
    fn set_total(&self, total: f64) {
        let current = self.get();
        if total > current {
            self.inc_by(total - current);
        }
    }
}

/// Makes a family's children: the default value, or a histogram with the family's buckets.
pub(crate) struct MakeMetric<M>(Arc<dyn Fn() -> M + Send + Sync>);

impl<M> Clone for MakeMetric<M> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<M> MetricConstructor<M> for MakeMetric<M> {
    fn new_metric(&self) -> M {
        (self.0)()
    }
}

/// A metric name with its label names, and one child per set of label values. Cloning gives
/// another handle on the same family.
pub struct Family<M> {
    name: Arc<str>,
    label_names: Arc<[String]>,
    children: ClientFamily<LabelSet, M, MakeMetric<M>>,
}

impl<M: Clone> Family<M> {
    /// The child for these label values (in the order of the family's label names), created
    /// on first use.
    ///
    /// # Panics
    ///
    /// When the number of values differs from the number of label names.
    pub fn with(&self, label_values: &[&str]) -> M {
        assert!(
            label_values.len() == self.label_names.len(),
            "metric {:?}: {} label values given for the label names {:?}",
            self.name,
            label_values.len(),
            self.label_names,
        );
        let key: LabelSet = self
            .label_names
            .iter()
            .zip(label_values)
            .map(|(name, value)| (name.clone(), escape(value)))
            .collect();
        self.children.get_or_create_owned(&key)
    }
}

impl<M> Family<M> {
    /// The full metric name, namespace included (counters without their `_total` suffix).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The label names, in the order [`with`](Self::with) takes the values.
    pub fn label_names(&self) -> &[String] {
        &self.label_names
    }
}

impl<M> Clone for Family<M> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            label_names: Arc::clone(&self.label_names),
            children: self.children.clone(),
        }
    }
}

impl<M> fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.name)
            .field("label_names", &self.label_names)
            .finish_non_exhaustive()
    }
}

/// A registered family, to hand out again when the same name is registered twice.
struct Registered {
    kind: &'static str,
    label_names: Vec<String>,
    family: Box<dyn Any + Send + Sync>,
}

/// The metrics of one process, rendered for `GET /metrics`.
pub struct Registry {
    namespace: String,
    registry: Mutex<prometheus_client::registry::Registry>,
    families: Mutex<BTreeMap<String, Registered>>,
    on_scrape: Mutex<Vec<ScrapeCallback>>,
    /// Held for a whole render, so scrape callbacks never run twice at once.
    rendering: Mutex<()>,
}

impl Registry {
    /// An empty registry whose family names are prefixed `namespace_` (no prefix when
    /// `namespace` is empty). Collectors (see [`Registry::collector`]) get no prefix.
    ///
    /// # Panics
    ///
    /// When `namespace` is not a valid Prometheus metric name.
    pub fn new(namespace: &str) -> Arc<Registry> {
        assert!(
            namespace.is_empty() || is_metric_name(namespace),
            "metric namespace {namespace:?} is not a valid Prometheus name"
        );
        Arc::new(Registry {
            namespace: namespace.to_owned(),
            registry: Mutex::new(prometheus_client::registry::Registry::default()),
            families: Mutex::new(BTreeMap::new()),
            on_scrape: Mutex::new(Vec::new()),
            rendering: Mutex::new(()),
        })
    }

    /// Registers a counter family, or returns the one already registered under this name with
    /// the same label names. `name` ends in `_total`, as the samples will.
    ///
    /// # Panics
    ///
    /// When the name does not end in `_total`, a name is invalid, or the name is taken by
    /// another type or by a counter with other label names.
    pub fn counter(&self, name: &str, help: &str, label_names: &[&str]) -> Family<Counter> {
        let Some(base) = name.strip_suffix("_total") else {
            panic!("counter {:?} must end in `_total`", self.full_name(name));
        };
        self.family("counter", base, help, label_names, Counter::default)
    }

    /// Registers a gauge family, or returns the one already registered under this name with
    /// the same label names.
    ///
    /// # Panics
    ///
    /// When a name is invalid, or the name is taken by another type or by a gauge with other
    /// label names.
    pub fn gauge(&self, name: &str, help: &str, label_names: &[&str]) -> Family<Gauge> {
        self.family("gauge", name, help, label_names, Gauge::default)
    }

    /// Registers a histogram family whose children count observations into `buckets` (upper
    /// bounds, ascending; `+Inf` is added), or returns the one already registered under this
    /// name with the same label names.
    ///
    /// # Panics
    ///
    /// When a name is invalid, or the name is taken by another type or by a histogram with
    /// other label names.
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        label_names: &[&str],
        buckets: &[f64],
    ) -> Family<Histogram> {
        let buckets: Arc<[f64]> = Arc::from(buckets);
        self.family("histogram", name, help, label_names, move || {
            Histogram::new(buckets.iter().copied())
        })
    }

    /// Adds a collector, asked for its metrics at every render (process metrics and the like).
    /// Its names get no namespace prefix.
    pub fn collector(&self, collector: Box<dyn Collector>) {
        lock(&self.registry).register_collector(collector);
    }

    /// Runs `callback` before each [`render`](Self::render), e.g. to copy totals kept
    /// elsewhere into gauges and counters at scrape time. Callbacks run in registration order,
    /// on a blocking-pool thread when the server renders; they should be quick.
    pub fn on_scrape(&self, callback: Box<dyn Fn() + Send + Sync>) {
        lock(&self.on_scrape).push(Arc::from(callback));
    }

    /// Runs the scrape callbacks, then renders every metric in the OpenMetrics text format
    /// (ending in `# EOF`).
    pub fn render(&self) -> String {
        let _rendering = lock(&self.rendering);
        // The callbacks run outside the other locks, so a callback may use the registry.
        let callbacks: Vec<ScrapeCallback> = lock(&self.on_scrape).clone();
        for callback in &callbacks {
            callback();
        }
        let mut out = String::new();
        let registry = lock(&self.registry);
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            // Writing to a String cannot fail; a collector may, and its error says nothing more.
            tracing::warn!(%error, "metrics render failed");
        }
        out
    }

    fn full_name(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            return name.to_owned();
        }
        format!("{}_{name}", self.namespace)
    }

    /// Registers a family of `kind`, or returns the compatible one already registered.
    fn family<M>(
        &self,
        kind: &'static str,
        name: &str,
        help: &str,
        label_names: &[&str],
        make: impl Fn() -> M + Send + Sync + 'static,
    ) -> Family<M>
    where
        M: Clone + Metric,
        ClientFamily<LabelSet, M, MakeMetric<M>>: Metric,
    {
        let name = self.full_name(name);
        check_names(&name, label_names);
        let label_names: Vec<String> = label_names.iter().map(|l| (*l).to_owned()).collect();
        let mut families = lock(&self.families);
        if let Some(existing) = families.get(&name) {
            let same = existing.kind == kind && existing.label_names == label_names;
            let family = existing.family.downcast_ref::<Family<M>>().filter(|_| same);
            let Some(family) = family else {
                panic!(
                    "metric {name:?} is already registered with another type or other label names"
                );
            };
            return family.clone();
        }
        let family = Family {
            name: Arc::from(name.as_str()),
            label_names: Arc::from(label_names.clone()),
            children: ClientFamily::new_with_constructor(MakeMetric(Arc::new(make))),
        };
        // The client library ends every help text with a full stop, and escapes nothing.
        let help = escape(help.trim_end().trim_end_matches('.'));
        let mut registry = lock(&self.registry);
        if label_names.is_empty() {
            // The only child is registered itself (no `{}` after the name) and exists from the
            // start, so it renders (0) before its first update.
            registry.register(name.clone(), help, family.with(&[]));
        } else {
            registry.register(name.clone(), help, family.children.clone());
        }
        drop(registry);
        families.insert(
            name,
            Registered {
                kind,
                label_names,
                family: Box::new(family.clone()),
            },
        );
        family
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("namespace", &self.namespace)
            .field("families", &lock(&self.families).keys().collect::<Vec<_>>())
            .field("on_scrape", &lock(&self.on_scrape).len())
            .finish()
    }
}

/// A label value or help text as the text format wants it: backslash, double quote and line
/// feed escaped. The client library writes both as they are, so they are escaped on the way in.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Panics unless `name` and `label_names` follow the Prometheus rules, without repeats.
fn check_names(name: &str, label_names: &[&str]) {
    assert!(
        is_metric_name(name),
        "metric name {name:?} is not a valid Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
    );
    for (index, label) in label_names.iter().enumerate() {
        assert!(
            is_label_name(label),
            "metric {name:?}: label name {label:?} is not a valid Prometheus label name \
             ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        );
        assert!(
            !label_names[..index].contains(label),
            "metric {name:?}: label name {label:?} appears twice"
        );
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
