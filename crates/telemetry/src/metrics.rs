//! Counters, gauges, their labelled families and the registry that renders them.
//!
//! Values are `f64`s stored as bits in an `AtomicU64`, so updating a metric takes no lock.
//! Looking a child up by its label values ([`Family::with`]) takes the family's lock; hot paths
//! keep the returned `Arc` instead of looking it up each time.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt::{self, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::text;

/// A callback run before each render.
type ScrapeCallback = Arc<dyn Fn() + Send + Sync>;

/// Locks `mutex`, also after a panic elsewhere: every update here leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An `f64` updated atomically.
#[derive(Default)]
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    /// Replaces the value with `next(current)`; `None` leaves it as it is.
    fn update(&self, next: impl Fn(f64) -> Option<f64>) {
        // The closure never fails for a reason other than `next` declining, so the result
        // carries nothing to act on.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                next(f64::from_bits(bits)).map(f64::to_bits)
            });
    }
}

/// A value that only goes up: events, bytes, seconds spent.
#[derive(Default)]
pub struct Counter {
    value: AtomicF64,
}

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1.0);
    }

    /// Adds `amount`; negative and NaN amounts are ignored, since a counter never goes down.
    pub fn inc_by(&self, amount: f64) {
        if amount.is_nan() || amount <= 0.0 {
            return;
        }
        self.value.update(|current| Some(current + amount));
    }

    /// Raises the counter to `total`, a monotone total kept elsewhere (a usage meter, a queue's
    /// delivery count). A total below the current value, or NaN, leaves the counter as it is.
    pub fn set_total(&self, total: f64) {
        self.value
            .update(|current| (total > current).then_some(total));
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        self.value.get()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Counter").field(&self.get()).finish()
    }
}

/// A value that goes up and down: shards in flight, queue depth, readiness of a dependency.
#[derive(Default)]
pub struct Gauge {
    value: AtomicF64,
}

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: f64) {
        self.value.set(value);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1.0);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1.0);
    }

    /// Adds `delta`, which may be negative.
    pub fn add(&self, delta: f64) {
        self.value.update(|current| Some(current + delta));
    }

    /// The current value.
    pub fn get(&self) -> f64 {
        self.value.get()
    }
}

impl fmt::Debug for Gauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Gauge").field(&self.get()).finish()
    }
}

/// A metric name with its help text and label names, and one child metric per set of label
/// values. Cloning gives another handle on the same family.
pub struct Family<M> {
    inner: Arc<FamilyInner<M>>,
}

struct FamilyInner<M> {
    name: String,
    help: String,
    label_names: Vec<String>,
    /// Keyed by label values in the order of `label_names`, so children render sorted.
    children: Mutex<BTreeMap<Vec<String>, Arc<M>>>,
}

impl<M: Default> Family<M> {
    /// A family with validated names; a family without labels gets its only child at once, so
    /// it renders a sample (0) before its first update.
    fn new(name: String, help: &str, label_names: &[&str]) -> Self {
        assert!(
            text::is_metric_name(&name),
            "metric name {name:?} is not a valid Prometheus name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        );
        for (index, label) in label_names.iter().enumerate() {
            assert!(
                text::is_label_name(label),
                "metric {name:?}: label name {label:?} is not a valid Prometheus label name \
                 ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
            );
            assert!(
                !label_names[..index].contains(label),
                "metric {name:?}: label name {label:?} appears twice"
            );
        }
        let mut children = BTreeMap::new();
        if label_names.is_empty() {
            children.insert(Vec::new(), Arc::default());
        }
        Self {
            inner: Arc::new(FamilyInner {
                name,
                help: help.to_owned(),
                label_names: label_names
                    .iter()
                    .map(|label| (*label).to_owned())
                    .collect(),
                children: Mutex::new(children),
            }),
        }
    }

    /// The child for these label values (in the order of the family's label names), created
    /// on first use.
    ///
    /// # Panics
    ///
    /// When the number of values differs from the number of label names.
    pub fn with(&self, label_values: &[&str]) -> Arc<M> {
        let inner = &self.inner;
        assert!(
            label_values.len() == inner.label_names.len(),
            "metric {:?}: {} label values given for the label names {:?}",
            inner.name,
            label_values.len(),
            inner.label_names,
        );
        let key: Vec<String> = label_values.iter().map(|v| (*v).to_owned()).collect();
        Arc::clone(lock(&inner.children).entry(key).or_default())
    }
}

impl<M> Family<M> {
    /// The full metric name, namespace included.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The label names, in the order [`with`](Self::with) takes the values.
    pub fn label_names(&self) -> &[String] {
        &self.inner.label_names
    }

    /// Appends the `# HELP` and `# TYPE` lines and one sample per child.
    fn render_into(&self, out: &mut String, kind: &str, value: fn(&M) -> f64) {
        let inner = &self.inner;
        if inner.help.is_empty() {
            let _ = writeln!(out, "# HELP {}", inner.name);
        } else {
            let _ = writeln!(
                out,
                "# HELP {} {}",
                inner.name,
                text::escape_help(&inner.help)
            );
        }
        let _ = writeln!(out, "# TYPE {} {kind}", inner.name);
        for (label_values, child) in lock(&inner.children).iter() {
            out.push_str(&inner.name);
            text::write_labels(out, &inner.label_names, label_values);
            out.push(' ');
            out.push_str(&text::format_value(value(child)));
            out.push('\n');
        }
    }
}

impl<M> Clone for Family<M> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M> fmt::Debug for Family<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Family")
            .field("name", &self.inner.name)
            .field("label_names", &self.inner.label_names)
            .finish_non_exhaustive()
    }
}

/// A registered family, whatever its type.
#[derive(Clone)]
enum Registered {
    Counter(Family<Counter>),
    Gauge(Family<Gauge>),
}

impl Registered {
    fn render_into(&self, out: &mut String) {
        match self {
            Registered::Counter(family) => family.render_into(out, "counter", Counter::get),
            Registered::Gauge(family) => family.render_into(out, "gauge", Gauge::get),
        }
    }
}

/// The metric families of one process, rendered for `GET /metrics`.
pub struct Registry {
    namespace: String,
    families: Mutex<BTreeMap<String, Registered>>,
    on_scrape: Mutex<Vec<ScrapeCallback>>,
}

impl Registry {
    /// An empty registry whose family names are prefixed `namespace_` (no prefix when
    /// `namespace` is empty).
    ///
    /// # Panics
    ///
    /// When `namespace` is not a valid Prometheus metric name.
    pub fn new(namespace: &str) -> Arc<Registry> {
        assert!(
            namespace.is_empty() || text::is_metric_name(namespace),
            "metric namespace {namespace:?} is not a valid Prometheus name"
        );
        Arc::new(Registry {
            namespace: namespace.to_owned(),
            families: Mutex::new(BTreeMap::new()),
            on_scrape: Mutex::new(Vec::new()),
        })
    }

    /// Registers a counter family, or returns the one already registered under this name with
    /// the same label names.
    ///
    /// # Panics
    ///
    /// When the name does not end in `_total`, a name is invalid, or the name is taken by a
    /// gauge or by a counter with other label names.
    pub fn counter(&self, name: &str, help: &str, label_names: &[&str]) -> Family<Counter> {
        let family = Family::new(self.full_name(name), help, label_names);
        assert!(
            family.name().ends_with("_total"),
            "counter {:?} must end in `_total`",
            family.name()
        );
        self.register(family, Registered::Counter, |registered| match registered {
            Registered::Counter(family) => Some(family),
            Registered::Gauge(_) => None,
        })
    }

    /// Registers a gauge family, or returns the one already registered under this name with
    /// the same label names.
    ///
    /// # Panics
    ///
    /// When a name is invalid, or the name is taken by a counter or by a gauge with other
    /// label names.
    pub fn gauge(&self, name: &str, help: &str, label_names: &[&str]) -> Family<Gauge> {
        let family = Family::new(self.full_name(name), help, label_names);
        self.register(family, Registered::Gauge, |registered| match registered {
            Registered::Gauge(family) => Some(family),
            Registered::Counter(_) => None,
        })
    }

    /// Runs `callback` before each [`render`](Self::render), e.g. to copy totals kept
    /// elsewhere into gauges and counters at scrape time. Callbacks run in registration order,
    /// on a blocking-pool thread when the server renders; they should be quick.
    pub fn on_scrape(&self, callback: Box<dyn Fn() + Send + Sync>) {
        lock(&self.on_scrape).push(Arc::from(callback));
    }

    /// Runs the scrape callbacks, then renders every family in the Prometheus text exposition
    /// format 0.0.4, families sorted by name and children by label values.
    pub fn render(&self) -> String {
        self.run_scrape_callbacks();
        // A snapshot, so a family registered meanwhile does not wait for the render.
        let families: Vec<Registered> = lock(&self.families).values().cloned().collect();
        let mut out = String::new();
        for family in &families {
            family.render_into(&mut out);
        }
        out
    }

    fn full_name(&self, name: &str) -> String {
        if self.namespace.is_empty() {
            return name.to_owned();
        }
        format!("{}_{name}", self.namespace)
    }

    /// Adds `family`, or returns the compatible family already registered under its name.
    fn register<M>(
        &self,
        family: Family<M>,
        wrap: fn(Family<M>) -> Registered,
        unwrap: fn(&Registered) -> Option<&Family<M>>,
    ) -> Family<M> {
        let mut families = lock(&self.families);
        let compatible = match families.entry(family.name().to_owned()) {
            Entry::Vacant(slot) => {
                slot.insert(wrap(family.clone()));
                return family;
            }
            Entry::Occupied(slot) => unwrap(slot.get())
                .filter(|existing| existing.label_names() == family.label_names())
                .cloned(),
        };
        drop(families);
        compatible.unwrap_or_else(|| {
            panic!(
                "metric {:?} is already registered with another type or other label names",
                family.name()
            )
        })
    }

    /// Runs the callbacks outside the lock, so a callback may use the registry.
    fn run_scrape_callbacks(&self) {
        let callbacks: Vec<ScrapeCallback> = lock(&self.on_scrape).clone();
        for callback in &callbacks {
            callback();
        }
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
